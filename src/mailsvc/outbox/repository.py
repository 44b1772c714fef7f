"""SQL of the outbox: entries, their claims by one sender at a time, and the sweep."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import case, func, select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import undefer

from mailsvc.kit.repository import TenantRepository, cross_tenant
from mailsvc.models import OutboxMessage

# Statuses in which an entry may still be attempted.
IN_FLIGHT = ("queued", "sending")


@dataclass(frozen=True, slots=True)
class Claim:
    """An entry this process may attempt now, with what the attempt needs."""

    entry: OutboxMessage
    # The last attempt may have succeeded unseen: look in the Sent mailbox first.
    verify_sent: bool


class OutboxRepository(TenantRepository):
    """One tenant's outbox."""

    async def add(self, values: dict[str, Any]) -> OutboxMessage | None:
        """Insert an entry; None when its idempotency key is already used."""
        statement = (
            self.scoped.insert(OutboxMessage, values)
            .on_conflict_do_nothing(
                index_elements=["tenant_id", "idempotency_key"],
                index_where=OutboxMessage.idempotency_key.is_not(None),
            )
            .returning(OutboxMessage)
        )
        entry: OutboxMessage | None = await self.session.scalar(statement)
        return entry

    async def by_idempotency_key(self, key: str) -> OutboxMessage | None:
        found: OutboxMessage | None = await self.session.scalar(
            self.scoped.select(OutboxMessage).where(OutboxMessage.idempotency_key == key)
        )
        return found

    async def get(self, entry_id: uuid.UUID, *, for_update: bool = False) -> OutboxMessage | None:
        statement = self.scoped.select(OutboxMessage).where(OutboxMessage.id == entry_id)
        if for_update:
            statement = statement.with_for_update()
        found: OutboxMessage | None = await self.session.scalar(statement)
        return found

    async def page(
        self,
        *,
        account_id: uuid.UUID | None,
        status: str | None,
        after: tuple[datetime, uuid.UUID] | None,
        limit: int,
    ) -> Sequence[OutboxMessage]:
        """Newest first, keyset-paged on (created_at, id)."""
        statement = self.scoped.select(OutboxMessage)
        if account_id is not None:
            statement = statement.where(OutboxMessage.account_id == account_id)
        if status is not None:
            statement = statement.where(OutboxMessage.status == status)
        if after is not None:
            statement = statement.where(
                tuple_(OutboxMessage.created_at, OutboxMessage.id) < tuple_(*after)
            )
        statement = statement.order_by(OutboxMessage.created_at.desc(), OutboxMessage.id.desc())
        result = await self.session.scalars(statement.limit(limit))
        return result.all()

    async def claim(self, entry_id: uuid.UUID, *, lease: timedelta) -> Claim | None:
        """Take a due entry for one attempt: `sending`, with a lease, attempts + 1.

        Only one process gets it: the row lock serialises claims, and an entry that
        is `sending` under a live lease, or has ended, is not due. An entry still
        `sending` after its lease belongs to a process that died mid-attempt.
        """
        entry = await self.session.scalar(
            self.scoped.select(OutboxMessage)
            .where(
                OutboxMessage.id == entry_id,
                OutboxMessage.status.in_(IN_FLIGHT),
                OutboxMessage.next_attempt_at <= func.now(),
            )
            .options(undefer(OutboxMessage.raw_mime))
            .with_for_update(skip_locked=True)
        )
        if entry is None:
            return None
        stale = entry.status == "sending"
        verify = entry.verify_sent or stale
        await self.session.execute(
            self.scoped.update(OutboxMessage)
            .where(OutboxMessage.id == entry_id)
            .values(
                status="sending",
                attempts=OutboxMessage.attempts + 1,
                last_attempt_at=func.now(),
                next_attempt_at=func.now() + lease,
                verify_sent=verify,
            )
        )
        await self.session.refresh(entry)
        return Claim(entry=entry, verify_sent=verify)

    async def finish(self, entry_id: uuid.UUID, values: dict[str, Any]) -> OutboxMessage | None:
        """Record an attempt's outcome, if the entry is still this attempt's (`sending`).

        A user cannot cancel while `sending`, so the guard only fails when the lease
        ran out and another process took the entry over.
        """
        entry: OutboxMessage | None = await self.session.scalar(
            self.scoped.update(OutboxMessage)
            .where(OutboxMessage.id == entry_id, OutboxMessage.status == "sending")
            .values(**values)
            .returning(OutboxMessage)
        )
        return entry

    async def with_message(self, entry_id: uuid.UUID) -> OutboxMessage | None:
        """An entry with its message bytes."""
        found: OutboxMessage | None = await self.session.scalar(
            self.scoped.select(OutboxMessage)
            .where(OutboxMessage.id == entry_id)
            .options(undefer(OutboxMessage.raw_mime))
        )
        return found

    async def set_values(self, entry_id: uuid.UUID, values: dict[str, Any]) -> None:
        await self.session.execute(
            self.scoped.update(OutboxMessage).where(OutboxMessage.id == entry_id).values(**values)
        )

    async def cancel(self, entry_id: uuid.UUID) -> OutboxMessage | None:
        """Cancel a queued entry; None when it is not queued (any more)."""
        entry: OutboxMessage | None = await self.session.scalar(
            self.scoped.update(OutboxMessage)
            .where(OutboxMessage.id == entry_id, OutboxMessage.status == "queued")
            .values(status="cancelled")
            .returning(OutboxMessage)
        )
        return entry

    async def retry_now(self, entry_id: uuid.UUID, *, more_attempts: int) -> OutboxMessage | None:
        """Make an entry due now; None when it is neither `queued` nor `failed`.

        A `queued` entry keeps its attempts; a `failed` one is `queued` again with a
        fresh budget: `more_attempts` beyond those made. `attempts` keeps counting, so
        the job id of each attempt (`outbox:<id>:<attempt>`) stays unique and arq never
        drops a new attempt's job as a repeat of an old one. Both keep their bytes, their
        Message-ID and `verify_sent`, so an attempt that may have gone through unseen
        is still looked for in the Sent mailbox first. Guarded on the status, like
        `claim`: an entry being sent, or ended otherwise, is left alone.
        """
        failed = OutboxMessage.status == "failed"
        entry: OutboxMessage | None = await self.session.scalar(
            self.scoped.update(OutboxMessage)
            .where(OutboxMessage.id == entry_id, OutboxMessage.status.in_(("queued", "failed")))
            .values(
                status="queued",
                next_attempt_at=func.now(),
                max_attempts=case(
                    (failed, OutboxMessage.attempts + more_attempts),
                    else_=OutboxMessage.max_attempts,
                ),
            )
            .returning(OutboxMessage)
        )
        return entry

    async def mark_bounced(
        self, *, account_id: uuid.UUID, message_id_header: str, status: str, diagnostic: str | None
    ) -> Sequence[OutboxMessage]:
        """Mark the account's `sent` entries with this Message-ID `bounced`; those marked.

        Guarded on `sent`: an entry bounced already keeps its first report, and one
        still in flight, failed or cancelled is left to its own outcome. Message-IDs
        are generated per entry, so this marks one entry, or none.
        """
        result = await self.session.scalars(
            self.scoped.update(OutboxMessage)
            .where(
                OutboxMessage.account_id == account_id,
                OutboxMessage.message_id_header == message_id_header,
                OutboxMessage.status == "sent",
            )
            .values(status="bounced", bounce_status=status, bounce_diagnostic=diagnostic)
            .returning(OutboxMessage)
        )
        return result.all()


# Filing a Sent copy is tried this often in all; the pause grows by this much a try.
MAX_SENT_COPY_ATTEMPTS = 8
SENT_COPY_PAUSE_MINUTES = 2


@cross_tenant(reason="the sweep finds Sent copies to retry in every tenant; ids only")
async def copies_to_file(session: AsyncSession, *, limit: int) -> list[tuple[str, uuid.UUID]]:
    """(tenant, id) of sent entries whose Sent copy failed and is due another try."""
    rows = await session.execute(
        select(OutboxMessage.tenant_id, OutboxMessage.id)
        .where(
            OutboxMessage.status.in_(("sent", "bounced")),
            OutboxMessage.sent_copy_saved_at.is_(None),
            OutboxMessage.sent_copy_attempts > 0,
            OutboxMessage.sent_copy_attempts < MAX_SENT_COPY_ATTEMPTS,
            OutboxMessage.updated_at
            < func.now()
            - func.make_interval(
                0, 0, 0, 0, 0, OutboxMessage.sent_copy_attempts * SENT_COPY_PAUSE_MINUTES
            ),
        )
        .order_by(OutboxMessage.updated_at)
        .limit(limit)
    )
    return [(tenant_id, entry_id) for tenant_id, entry_id in rows.all()]


@cross_tenant(reason="the sweep finds overdue sends in every tenant; ids only")
async def due_entries(
    session: AsyncSession, *, overdue_by: timedelta, limit: int
) -> list[tuple[str, uuid.UUID]]:
    """(tenant, id) of entries across tenants whose attempt is overdue.

    The sweep's only cross-tenant read: it returns ids, and each attempt then runs
    in its tenant's scope. `overdue_by` leaves time for the attempt that is already
    scheduled (an arq job, or the api process's immediate send) to run first.
    """
    rows = await session.execute(
        select(OutboxMessage.tenant_id, OutboxMessage.id)
        .where(
            OutboxMessage.status.in_(IN_FLIGHT),
            OutboxMessage.next_attempt_at <= func.now() - overdue_by,
        )
        .order_by(OutboxMessage.next_attempt_at)
        .limit(limit)
    )
    return [(tenant_id, entry_id) for tenant_id, entry_id in rows.all()]


@cross_tenant(reason="the outbox gauge counts entries in flight in every tenant; counts only")
async def count_in_flight(session: AsyncSession) -> dict[str, int]:
    """Entries per in-flight status across tenants, 0 for a status without any.

    Its WHERE clause is `ix_outbox_due`'s predicate, so PostgreSQL reads that small
    partial index (entries still to send), not the sent history.
    """
    rows = await session.execute(
        select(OutboxMessage.status, func.count())
        .where(OutboxMessage.status.in_(IN_FLIGHT))
        .group_by(OutboxMessage.status)
    )
    counts = dict.fromkeys(IN_FLIGHT, 0)
    counts.update(rows.all())
    return counts
