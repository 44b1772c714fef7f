"""Bounces reach the outbox: the sync marks the entries that reports say failed.

A delivery status notification (RFC 3464) that the sync stores in an account's
mailbox is matched to the outbox entry it reports on, by the returned message's
Message-ID, within the same tenant and account, and the entry goes from `sent` to
`bounced` with the reported status and diagnostic:

    stored message ── no `delivery_report` (ordinary mail) ─────────── nothing
      │ read_bounces: parse_dsn, in a thread, before the store's transaction
      ├── unreadable, no original Message-ID, no permanent failure ── nothing
      ▼ record_bounces: in the store's transaction, newly stored messages only
    UPDATE outbox ... WHERE status = 'sent' ── no such entry of the account ── nothing
      │
      ▼ `bounced`, and one `outbox.bounced` change in the same transaction

Decisions:
- Only a permanent failure (`action: failed`, status 5.x.x) marks an entry. A
  delayed or other 4.x.x report records nothing: the reporting server keeps
  trying and sends a failure report if it gives up, and `last_error` describes
  mailsvc's own attempts, not a remote queue's.
- Only a `sent` entry is marked; a `bounced` one keeps its first report. So a
  report stored twice (a resync after UIDVALIDITY changed, a copy in another
  mailbox) changes nothing and writes no second change.
- Another account's entry is never touched, even in the same tenant: what lands
  in one mailbox must not rewrite the outbox of another.
- The first permanently failed recipient gives `bounce_status` and
  `bounce_diagnostic`; the change also lists every permanently failed recipient.

Where the report is read: raw sources exist only in the parser's worker
processes, and the pure `mailsvc.mime` layer there may not import a domain
package, so it hands a report's first bytes over in
`ParsedMessage.delivery_report` and this module reads them. Reports are hostile
input and a crafted one costs parse_dsn up to ~150 ms (within its 500 KB bound),
so they are read in a thread, before the transaction: the event loop of the api
process (which runs IDLE-triggered syncs) keeps serving meanwhile. Messages above
the sync size cap are parsed from their header and text parts only and are never
read as reports.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from mailsvc.event.repository import ChangeRepository
from mailsvc.mime import ParsedMessage
from mailsvc.mime.dsn import parse_dsn
from mailsvc.models import OutboxMessage
from mailsvc.ops.metrics import count_outbox_bounces
from mailsvc.outbox.repository import OutboxRepository
from mailsvc.outbox.sender import outbox_event

log = structlog.get_logger("mailsvc.outbox")

Key = TypeVar("Key", bound=Hashable)


@dataclass(frozen=True, slots=True)
class PermanentBounce:
    """A report of a permanent failure of the message with `message_id_header`.

    `status` and `diagnostic` are the first failed recipient's; `recipients` are
    all the permanently failed ones (final recipients, as the report names them).
    """

    message_id_header: str
    status: str
    diagnostic: str | None
    recipients: tuple[str, ...]


def permanent_bounce(report: bytes) -> PermanentBounce | None:
    """What a raw delivery report says that marks an entry, or None. Never raises."""
    bounce = parse_dsn(report)
    if bounce is None or bounce.original_message_id is None:
        return None
    failed = [recipient for recipient in bounce.recipients if recipient.is_permanent_failure]
    first = failed[0] if failed else None
    if first is None or first.status is None:
        return None
    return PermanentBounce(
        message_id_header=bounce.original_message_id,
        status=first.status,
        diagnostic=first.diagnostic,
        recipients=tuple(r.final_recipient for r in failed if r.final_recipient is not None),
    )


async def read_bounces(messages: Mapping[Key, ParsedMessage]) -> dict[Key, PermanentBounce]:
    """The permanent failures reported by the delivery reports among `messages`.

    Ordinary messages cost one attribute check; reports are read in a thread.
    """
    reports = {
        key: message.delivery_report
        for key, message in messages.items()
        if message.delivery_report is not None
    }
    if not reports:
        return {}
    return await asyncio.to_thread(_read_all, reports)


def _read_all(reports: Mapping[Key, bytes]) -> dict[Key, PermanentBounce]:
    found = {key: permanent_bounce(report) for key, report in reports.items()}
    return {key: bounce for key, bounce in found.items() if bounce is not None}


async def record_bounces(
    session: AsyncSession,
    tenant_id: str,
    account_id: uuid.UUID,
    bounces: Sequence[PermanentBounce],
) -> int:
    """Mark the account's `sent` entries that `bounces` report on, in the caller's
    transaction, each with its `outbox.bounced` change; how many were marked.

    Call it before appending other changes in the same transaction: it locks outbox
    rows, and appending locks the account row, the order the sender takes them in.
    """
    if not bounces:
        return 0
    outbox = OutboxRepository(session, tenant_id)
    events: list[tuple[str, dict[str, Any]]] = []
    for bounce in bounces:
        marked = await outbox.mark_bounced(
            account_id=account_id,
            message_id_header=bounce.message_id_header,
            status=bounce.status,
            diagnostic=bounce.diagnostic,
        )
        if not marked:
            # Mail sent by another client, an entry not `sent`, or bounced already.
            log.debug(
                "outbox.bounce_unmatched",
                account_id=str(account_id),
                message_id=bounce.message_id_header,
                status=bounce.status,
            )
        for entry in marked:
            log.info(
                "outbox.bounced",
                account_id=str(account_id),
                outbox_id=str(entry.id),
                status=bounce.status,
            )
            events.append(bounced_event(entry, bounce))
    await ChangeRepository(session, tenant_id).append_many(account_id, events)
    count_outbox_bounces(len(events))
    return len(events)


def bounced_event(entry: OutboxMessage, bounce: PermanentBounce) -> tuple[str, dict[str, Any]]:
    """The `outbox.bounced` change: the entry's usual payload and what bounced."""
    type_, payload = outbox_event(entry)
    return type_, {
        **payload,
        "bounce_status": entry.bounce_status,
        "bounce_diagnostic": entry.bounce_diagnostic,
        "bounced_recipients": list(bounce.recipients),
    }
