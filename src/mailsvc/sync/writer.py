"""The transactions of one mailbox's sync pass: what `SyncEngine` writes, and how.

Each `MailboxWriter` method is one transaction. The invariants of `engine.py` hold
here: `uidnext` only advances in the transaction that stored the messages below it,
and `highestmodseq` is written last, with the changes it vouches for.

Nothing here writes search documents: triggers on `messages` (migration 0013) queue
every inserted, changed or deleted row in `search_queue` within the same transaction,
and the worker's indexer (`mailsvc.search.indexer`) takes them from there. A stored
batch is listable when its transaction commits and searchable once it is indexed.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from mailsvc.event.repository import ChangeRepository
from mailsvc.imap import wire
from mailsvc.kit.db import ModSeq, Uid, utcnow
from mailsvc.kit.ids import uuid7
from mailsvc.mime import ParsedMessage
from mailsvc.mirror.repository import MailboxRepository, MirrorRepository, ReportedState
from mailsvc.mirror.server_changes import deleted_event, record_server_changes, session_free_flags
from mailsvc.mirror.thread_repository import ThreadingRepository
from mailsvc.mirror.threading import ThreadingInput, thread_new_messages
from mailsvc.models import Mailbox
from mailsvc.outbox.bounces import read_bounces, record_bounces


def _address_json(addresses: Sequence[Any]) -> list[dict[str, str | None]]:
    return [{"name": a.name, "address": a.address} for a in addresses]


def as_uid(value: int | None) -> Uid | None:
    return None if value is None else Uid(value)


class MailboxWriter:
    """The transactions of one mailbox's pass; each method is one transaction."""

    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        tenant_id: str,
        account_id: uuid.UUID,
        mailbox: Mailbox,
        *,
        gmail: bool = False,
    ) -> None:
        """`gmail`: the server offers X-GM-EXT-1, so rows carry labels (never NULL)."""
        self._sessionmaker = sessionmaker
        self._tenant_id = tenant_id
        self._account_id = account_id
        self._mailbox = mailbox
        self._gmail = gmail

    async def start(self, selected: wire.SelectedState) -> None:
        """Mark the pass as running; a first pass adopts the server's UIDVALIDITY."""
        values: dict[str, Any] = {
            "messages_total": selected.exists,
            "sync_state": "syncing",
            "sync_started_at": utcnow(),
        }
        if self._mailbox.uidvalidity is None:
            values["uidvalidity"] = selected.uidvalidity
        async with self._sessionmaker.begin() as session:
            await MailboxRepository(session, self._tenant_id).set_fields(self._mailbox.id, **values)
        if self._mailbox.uidvalidity is None:
            self._mailbox.uidvalidity = as_uid(selected.uidvalidity)

    async def reset(self, uidvalidity: int | None) -> int:
        """UIDVALIDITY changed: every stored UID is meaningless now."""
        async with self._sessionmaker.begin() as session:
            removed = await MirrorRepository(session, self._tenant_id).delete_mailbox_messages(
                self._mailbox.id
            )
            await ThreadingRepository(session, self._tenant_id).refresh_summaries(
                [t for _, _, t in removed if t is not None]
            )
            await ChangeRepository(session, self._tenant_id).append_many(
                self._account_id,
                [
                    deleted_event(message_id, self._mailbox.id, uid)
                    for message_id, uid, _ in removed
                ],
            )
            await MailboxRepository(session, self._tenant_id).set_fields(
                self._mailbox.id,
                uidvalidity=uidvalidity,
                uidnext=None,
                highestmodseq=None,
                messages_synced=0,
                messages_unseen=0,
            )
        self._mailbox.uidvalidity = as_uid(uidvalidity)
        self._mailbox.messages_synced = 0
        return len(removed)

    async def refresh_statistics(self) -> None:
        async with self._sessionmaker.begin() as session:
            await MirrorRepository(session, self._tenant_id).refresh_statistics()

    async def lacks_labels(self) -> bool:
        """Whether rows of this mailbox were stored before Gmail's labels were fetched."""
        async with self._sessionmaker() as session:
            return await MirrorRepository(session, self._tenant_id).lacks_labels(self._mailbox.id)

    async def stored_uids(self) -> list[int]:
        async with self._sessionmaker() as session:
            return await MirrorRepository(session, self._tenant_id).uids(self._mailbox.id)

    async def store_batch(
        self,
        items: Sequence[wire.FetchedItem],
        parsed: Sequence[ParsedMessage],
        *,
        next_uid: int,
        announce: bool,
    ) -> int:
        """Store one fetched batch and advance `uidnext` in the same transaction."""
        uidvalidity = self._mailbox.uidvalidity
        by_uid: dict[int, tuple[uuid.UUID, wire.FetchedItem, ParsedMessage]] = {}
        for item, message in zip(items, parsed, strict=True):
            assert item.uid is not None
            by_uid[item.uid] = (uuid7(), item, message)
        bounces = await read_bounces({uid: message for uid, (_, _, message) in by_uid.items()})
        async with self._sessionmaker.begin() as session:
            mailbox = await MailboxRepository(session, self._tenant_id).lock(self._mailbox.id)
            if mailbox is None or mailbox.uidvalidity != uidvalidity:
                return 0  # deleted or reset meanwhile; the next pass starts over
            thread_of = await thread_new_messages(
                session,
                self._tenant_id,
                self._account_id,
                [
                    ThreadingInput(
                        id=message_id,
                        message_id=message.message_id,
                        in_reply_to=message.in_reply_to,
                        references=tuple(message.references),
                        gm_thread_id=item.gm_thrid,
                        subject=message.subject,
                    )
                    for message_id, item, message in by_uid.values()
                ],
            )
            messages = MirrorRepository(session, self._tenant_id)
            ids = await messages.insert_many(
                [
                    self._row(message_id, item, message, uidvalidity, thread_of.get(message_id))
                    for message_id, item, message in by_uid.values()
                ]
            )
            await messages.insert_attachments(
                [
                    {
                        "message_id": message_id,
                        "section": a.section,
                        "filename": a.filename,
                        "content_type": a.content_type[:255],
                        "encoding": (a.encoding or "7bit")[:32],
                        "size": a.size,
                        "content_id": a.content_id,
                        "is_inline": a.is_inline,
                    }
                    for uid, message_id in ids.items()
                    for a in by_uid[uid][2].attachments
                ]
            )
            # Reports stored before are not read again; this comes before any change is
            # appended (see record_bounces for the lock order).
            await record_bounces(
                session,
                self._tenant_id,
                self._account_id,
                [bounces[uid] for uid in sorted(ids) if uid in bounces],
            )
            # Threads made for messages that turned out to be stored already end up
            # empty; refreshing the summaries drops them.
            threads = set(thread_of.values())
            await ThreadingRepository(session, self._tenant_id).refresh_summaries(list(threads))
            if announce:
                await ChangeRepository(session, self._tenant_id).append_many(
                    self._account_id,
                    [
                        (
                            "message.created",
                            {
                                "message_id": str(ids[uid]),
                                "mailbox_id": str(self._mailbox.id),
                                "uid": uid,
                                "subject": by_uid[uid][2].subject,
                            },
                        )
                        for uid in sorted(ids)
                    ],
                )
            mailbox.uidnext = Uid(max(mailbox.uidnext or 1, next_uid))
            mailbox.messages_synced += len(ids)
            # Counted up under the row lock, so the count is right while a first mirror
            # runs; the pass's `apply_changes` recounts it from the rows at its end.
            mailbox.messages_unseen += sum(
                "\\Seen" not in session_free_flags(by_uid[uid][1].flags) for uid in ids
            )
        self._mailbox.uidnext = Uid(max(self._mailbox.uidnext or 1, next_uid))
        self._mailbox.messages_synced += len(ids)
        return len(ids)

    def _row(
        self,
        message_id: uuid.UUID,
        item: wire.FetchedItem,
        message: ParsedMessage,
        uidvalidity: int | None,
        thread_id: uuid.UUID | None,
    ) -> dict[str, Any]:
        """A JSON-ready row for `MirrorRepository.insert_many`."""
        return {
            "id": str(message_id),
            "account_id": str(self._account_id),
            "mailbox_id": str(self._mailbox.id),
            "uid": item.uid,
            "uidvalidity": uidvalidity,
            "modseq": item.modseq,
            "message_id_header": message.message_id,
            "in_reply_to": message.in_reply_to,
            "references": list(message.references),
            "subject": message.subject,
            "from_": _address_json(message.from_),
            "sender": _address_json(message.sender),
            "to": _address_json(message.to),
            "cc": _address_json(message.cc),
            "bcc": _address_json(message.bcc),
            "reply_to": _address_json(message.reply_to),
            "date": message.date.isoformat() if message.date else None,
            "internal_date": (item.internal_date or utcnow()).isoformat(),
            "size": item.size or 0,
            "flags": session_free_flags(item.flags),
            "thread_id": str(thread_id) if thread_id else None,
            "gm_thread_id": item.gm_thrid,
            "gm_message_id": item.gm_msgid,
            # On Gmail a message fetched without an X-GM-LABELS answer has none known
            # yet (the next flag pass fills them in); elsewhere labels stay NULL.
            "labels": list(item.gm_labels or ()) if self._gmail else None,
            "snippet": message.snippet,
            "text_body": message.text_body,
            "html_body": message.html_body,
            "has_attachments": message.has_attachments,
            "parse_error": "; ".join(message.parse_errors)[:2000] or None,
        }

    async def finish_new(self, uidnext: int) -> None:
        async with self._sessionmaker.begin() as session:
            await MailboxRepository(session, self._tenant_id).set_fields(
                self._mailbox.id, uidnext=max(self._mailbox.uidnext or 1, uidnext)
            )
        self._mailbox.uidnext = Uid(max(self._mailbox.uidnext or 1, uidnext))

    async def apply_changes(
        self,
        reported: Sequence[ReportedState],
        vanished: Sequence[int],
        selected: wire.SelectedState,
        *,
        announce: bool = True,
    ) -> tuple[int, int]:
        """Flag (and label) changes and deletions, then the cursor they vouch for; one
        transaction. `announce=False`: no `message.updated` for the changed rows."""
        async with self._sessionmaker.begin() as session:
            messages = MirrorRepository(session, self._tenant_id)
            changed, removed = await record_server_changes(
                session,
                self._tenant_id,
                self._account_id,
                self._mailbox.id,
                reported=reported,
                vanished=vanished,
                announce=announce,
            )
            count = await messages.count(self._mailbox.id)
            # Every new UID below the server's UIDNEXT was fetched earlier in this pass.
            uidnext = max(self._mailbox.uidnext or 1, selected.uidnext or 1)
            await MailboxRepository(session, self._tenant_id).set_fields(
                self._mailbox.id,
                uidvalidity=selected.uidvalidity,
                uidnext=uidnext,
                highestmodseq=None if selected.nomodseq else selected.highestmodseq,
                messages_total=selected.exists,
                messages_synced=count,
                sync_state="synced",
                last_synced_at=utcnow(),
                sync_error=None,
                sync_error_at=None,
            )
        self._mailbox.messages_synced = count
        self._mailbox.uidnext = Uid(uidnext)
        self._mailbox.highestmodseq = (
            None if selected.highestmodseq is None else ModSeq(selected.highestmodseq)
        )
        return changed, removed


async def settle_label_folder(
    sessionmaker: async_sessionmaker[AsyncSession],
    tenant_id: str,
    account_id: uuid.UUID,
    mailbox: Mailbox,
) -> None:
    """A Gmail label folder holds no rows and is never selected: mark it synced.

    Rows it holds from before the account was mirrored the Gmail way (All Mail
    hidden from IMAP then) are the same messages as All Mail's: they go, with
    their `message.deleted` changes.
    """
    if mailbox.sync_state == "synced" and mailbox.uidvalidity is None:
        return
    writer = MailboxWriter(sessionmaker, tenant_id, account_id, mailbox)
    if mailbox.uidvalidity is not None:
        await writer.reset(None)
    async with sessionmaker.begin() as session:
        await MailboxRepository(session, tenant_id).set_fields(
            mailbox.id,
            messages_total=0,
            sync_state="synced",
            last_synced_at=utcnow(),
            sync_error=None,
            sync_error_at=None,
        )
    mailbox.sync_state = "synced"
