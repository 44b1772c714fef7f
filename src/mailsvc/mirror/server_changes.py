"""Recording what a server reported about stored messages: new flags (and Gmail
labels) and expunges.

The sync engine calls it with what it fetched; message actions call it after they
changed the server themselves. Either way the rows, their threads and the change
log end up as the server holds them, in the caller's transaction.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from mailsvc.event.repository import ChangeRepository
from mailsvc.mirror.repository import (
    ChangedRow,
    MailboxRepository,
    MirrorRepository,
    ReportedState,
)
from mailsvc.mirror.thread_repository import ThreadingRepository


def session_free_flags(flags: Sequence[str] | None) -> list[str]:
    """Flags to store: `\\Recent` is per IMAP session (RFC 3501 2.3.2), not message state."""
    return sorted({flag for flag in flags or () if flag.lower() != "\\recent"})


def deleted_event(
    message_id: uuid.UUID, mailbox_id: uuid.UUID, uid: int
) -> tuple[str, dict[str, Any]]:
    return (
        "message.deleted",
        {"message_id": str(message_id), "mailbox_id": str(mailbox_id), "uid": uid},
    )


def updated_event(row: ChangedRow, mailbox_id: uuid.UUID) -> dict[str, Any]:
    """The `message.updated` payload of a row whose flags or labels changed: the
    flags now, and the labels now on Gmail."""
    payload: dict[str, Any] = {
        "message_id": str(row.id),
        "mailbox_id": str(mailbox_id),
        "uid": row.uid,
        "flags": row.flags,
    }
    if row.labels is not None:
        payload["labels"] = row.labels
    return payload


async def record_server_changes(
    session: AsyncSession,
    tenant_id: str,
    account_id: uuid.UUID,
    mailbox_id: uuid.UUID,
    *,
    reported: Sequence[ReportedState] = (),
    vanished: Sequence[int] = (),
    recount_unseen: bool = True,
    announce: bool = True,
) -> tuple[int, int]:
    """Store flags, labels and expunges the server reported, with their changes and
    thread counts.

    Used by the sync and by the API after it changed the server itself; either way
    the rows, and the mailbox's unread count, end up as the server holds them.
    `recount_unseen=False` leaves the count to the caller (message actions recount
    after their commit). `announce=False` appends no `message.updated` for changed
    rows (a backfill of Gmail labels, which changes every row of a mailbox at once).
    Returns (updated, deleted) counts.
    """
    messages = MirrorRepository(session, tenant_id)
    changed = await messages.update_reported(mailbox_id, reported)
    removed = await messages.delete_uids(mailbox_id, sorted(set(vanished)))
    # Always, not only when this call changed rows: the sync ends each mailbox's pass
    # here, after storing new messages in transactions of their own. Before threads
    # and the change log, the lock order of `MailboxWriter.store_batch`.
    if recount_unseen:
        await MailboxRepository(session, tenant_id).refresh_unseen([mailbox_id])
    threads = [row.thread_id for row in changed if row.thread_id is not None]
    threads += [t for *_, t in removed if t is not None]
    await ThreadingRepository(session, tenant_id).refresh_summaries(threads)
    events: list[tuple[str, dict[str, Any]]] = [
        ("message.updated", updated_event(row, mailbox_id)) for row in changed if announce
    ]
    events += [deleted_event(message_id, mailbox_id, uid) for message_id, uid, _ in removed]
    await ChangeRepository(session, tenant_id).append_many(account_id, events)
    return len(changed), len(removed)
