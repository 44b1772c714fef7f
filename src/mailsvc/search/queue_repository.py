"""SQL of the search queue: what the indexer takes, the documents it reads, what is left.

Triggers on `messages` (migration 0013) append a `search_queue` row for every
message inserted, changed in a searched column or deleted, and notify
`SEARCH_CHANNEL` with the tenant. The indexer takes a tenant's oldest rows, reads
those messages as they are now (`documents`; a message without a row was deleted),
hands them to the backend and deletes exactly the rows it took (`forget`), all in
one transaction. Rows that arrive meanwhile stay for the next batch, so the last
state of a message is always indexed after its last change.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import BigInteger, any_, bindparam, func, select, text
from sqlalchemy.dialects.postgresql import ARRAY, UUID
from sqlalchemy.ext.asyncio import AsyncSession

from mailsvc.kit.repository import TenantRepository, cross_tenant
from mailsvc.models import Account, Mailbox, Message, SearchQueueEntry
from mailsvc.search.backend import SEARCH_BODY_CHARS, Address, SearchDocument

SEARCH_CHANNEL = "mailsvc_search"
"""`NOTIFY` channel of the queue triggers; the payload is the tenant id."""

_SEEN = "\\Seen"
_FLAGGED = "\\Flagged"


@dataclass(frozen=True, slots=True)
class QueuedMessage:
    """One queue row: a message whose search document is due."""

    seq: int
    account_id: uuid.UUID
    message_id: uuid.UUID


def _addresses(*lists: list[dict[str, Any]] | None) -> tuple[Address, ...]:
    """The stored JSONB address lists (`[{"name", "address"}]`) as one tuple."""
    return tuple(
        Address(name=entry.get("name") or None, address=entry.get("address") or "")
        for entries in lists
        for entry in entries or ()
        if entry.get("name") or entry.get("address")
    )


@cross_tenant(reason="the indexer's safety net looks for every tenant with queued rows")
async def tenants_with_queued_messages(session: AsyncSession) -> list[str]:
    """Every tenant with at least one queued message, in tenant order: one index probe
    per tenant (a loose index scan over ix_search_queue_tenant_id_seq), however many
    rows each has queued."""
    statement = text(
        """
        WITH RECURSIVE tenants AS (
            (SELECT tenant_id FROM search_queue ORDER BY tenant_id LIMIT 1)
            UNION ALL
            SELECT (
                SELECT q.tenant_id FROM search_queue AS q
                WHERE q.tenant_id > tenants.tenant_id ORDER BY q.tenant_id LIMIT 1
            )
            FROM tenants WHERE tenants.tenant_id IS NOT NULL
        )
        SELECT tenant_id FROM tenants WHERE tenant_id IS NOT NULL
        """
    )
    return list((await session.scalars(statement)).all())


@cross_tenant(reason="`mailsvc search reindex` without --tenant rebuilds every tenant's index")
async def tenants_with_messages(session: AsyncSession) -> list[str]:
    """Operator use only (`mailsvc search reindex`); never behind an endpoint.

    Every tenant with at least one stored message, in tenant order: one index probe
    per tenant (a loose index scan over ix_messages_tenant_listing), however many
    messages each has.
    """
    statement = text(
        """
        WITH RECURSIVE tenants AS (
            (SELECT tenant_id FROM messages ORDER BY tenant_id LIMIT 1)
            UNION ALL
            SELECT (
                SELECT m.tenant_id FROM messages AS m
                WHERE m.tenant_id > tenants.tenant_id ORDER BY m.tenant_id LIMIT 1
            )
            FROM tenants WHERE tenants.tenant_id IS NOT NULL
        )
        SELECT tenant_id FROM tenants WHERE tenant_id IS NOT NULL
        """
    )
    return list((await session.scalars(statement)).all())


class SearchQueueRepository(TenantRepository):
    """One tenant's queued messages, and the facts the indexer reads around them."""

    def _queued(self, message_ids: Sequence[uuid.UUID]) -> Any:
        return Message.id == any_(bindparam("message_ids", list(message_ids), type_=ARRAY(UUID)))

    async def lock_writer(self) -> bool:
        """Take the tenant's index-writing lock until this transaction ends; False when
        another transaction holds it.

        The fence behind the Redis lease: a process that stalled past its lease and
        wakes in the middle of a batch cannot write an older document over a newer
        one another process wrote meanwhile, because batches of one tenant never
        overlap. A PostgreSQL advisory lock, so it ends with the holder's transaction
        or connection, whatever happens to the process.
        """
        key = func.hashtextextended(f"mailsvc:search:{self.tenant_id}", 0)
        return bool(await self.session.scalar(select(func.pg_try_advisory_xact_lock(key))))

    async def take(self, limit: int) -> list[QueuedMessage]:
        """The tenant's oldest `limit` queue rows (not removed: see `forget`)."""
        rows = await self.session.execute(
            self.scoped.select(
                SearchQueueEntry.seq, SearchQueueEntry.account_id, SearchQueueEntry.message_id
            )
            .order_by(SearchQueueEntry.seq)
            .limit(limit)
        )
        return [QueuedMessage(seq, account_id, message_id) for seq, account_id, message_id in rows]

    async def documents(self, message_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, SearchDocument]:
        """The search documents of those of `message_ids` still stored, by id.

        The body is cut to `SEARCH_BODY_CHARS` by PostgreSQL, so a huge body is not
        sent whole only to be thrown away.
        """
        if not message_ids:
            return {}
        rows = await self.session.execute(
            self.scoped.select(
                Message.id,
                Message.account_id,
                Message.mailbox_id,
                Message.thread_id,
                Message.internal_date,
                Message.flags,
                Message.has_attachments,
                Message.labels,
                Message.subject,
                Message.from_,
                Message.to,
                Message.cc,
                Message.bcc,
                Message.reply_to,
                func.left(Message.text_body, SEARCH_BODY_CHARS),
            ).where(self._queued(message_ids))
        )
        documents: dict[uuid.UUID, SearchDocument] = {}
        for row in rows:
            flags = row.flags or []
            documents[row.id] = SearchDocument(
                id=row.id,
                account_id=row.account_id,
                mailbox_id=row.mailbox_id,
                thread_id=row.thread_id,
                received_at=row.internal_date,
                seen=_SEEN in flags,
                flagged=_FLAGGED in flags,
                has_attachments=row.has_attachments,
                labels=None if row.labels is None else tuple(row.labels),
                subject=row.subject or "",
                from_=_addresses(row.from_),
                to=_addresses(row.to, row.cc, row.bcc),
                reply_to=_addresses(row.reply_to),
                body=row[-1] or "",
            )
        return documents

    async def forget(self, seqs: Sequence[int]) -> None:
        """Delete exactly these queue rows (those a batch took)."""
        if not seqs:
            return
        await self.session.execute(
            self.scoped.delete(SearchQueueEntry).where(
                SearchQueueEntry.seq == any_(bindparam("seqs", list(seqs), type_=ARRAY(BigInteger)))
            )
        )

    async def queue_all(self, *, account_id: uuid.UUID | None = None) -> int:
        """Queue every stored message of the tenant (or of one account) that is not
        queued already, newest first; how many rows were added.

        A message with a row queued already is indexed from it anyway, so a repeated
        rebuild does not index the tenant twice. Notifies the indexers.
        """
        already = (
            self.scoped.select(SearchQueueEntry.seq)
            .where(
                SearchQueueEntry.account_id == Message.account_id,
                SearchQueueEntry.message_id == Message.id,
            )
            .exists()
        )
        stored = self.scoped.select(Message.account_id, Message.id).where(~already)
        if account_id is not None:
            stored = stored.where(Message.account_id == account_id)
        rows = stored.order_by(Message.internal_date.desc(), Message.id.desc()).subquery()
        result = await self.session.execute(
            self.scoped.insert_select(
                SearchQueueEntry, {"account_id": rows.c.account_id, "message_id": rows.c.id}
            )
        )
        added: int = result.rowcount  # type: ignore[attr-defined]  # CursorResult
        if added:
            await self._notify()
        return added

    async def _notify(self) -> None:
        """Wake the indexers for this tenant (delivered when the transaction commits)."""
        await self.session.execute(select(func.pg_notify(SEARCH_CHANNEL, self.tenant_id)))

    async def has_pending(self, *, account_id: uuid.UUID | None = None) -> bool:
        """Whether any row of the tenant (or of one account) is queued."""
        probe = self.scoped.select(SearchQueueEntry.seq).limit(1)
        if account_id is not None:
            probe = probe.where(SearchQueueEntry.account_id == account_id)
        return await self.session.scalar(probe) is not None

    async def remaining(self) -> int:
        """How many rows of the tenant are queued (a message may have several)."""
        count = await self.session.scalar(self.scoped.select(func.count(), from_=SearchQueueEntry))
        return int(count or 0)

    async def was_searchable(self) -> bool:
        """Whether an account of the tenant has been announced as fully indexed: the
        tenant had a complete index once, so a missing one is a loss to rebuild, not
        a first index to fill."""
        announced = self.scoped.select(Account.id).where(Account.indexed_at.is_not(None))
        return bool(await self.session.scalar(select(announced.exists())))

    async def awaits_announcement(self, account_id: uuid.UUID) -> bool:
        """Whether the account's first mirror is complete and not yet announced as
        indexed (`mailsvc.search.indexed`).

        Complete: the account has mailboxes, and each selectable one has finished a
        sync pass, or failed in one (it is then retried on every pass, and an account
        should not wait for a mailbox the server cannot serve).
        """
        not_announced = await self.session.scalar(
            self.scoped.select(Account.id).where(
                Account.id == account_id, Account.indexed_at.is_(None)
            )
        )
        if not_announced is None:
            return False
        rows = await self.session.execute(
            self.scoped.select(Mailbox.last_synced_at, Mailbox.sync_state).where(
                Mailbox.account_id == account_id, Mailbox.selectable
            )
        )
        mailboxes = rows.all()
        return bool(mailboxes) and all(
            synced_at is not None or state == "error" for synced_at, state in mailboxes
        )

    async def mark_indexed(self, account_id: uuid.UUID) -> int | None:
        """Record the account as announced; its stored messages, or None when it was
        announced already (or is gone). The row lock makes one caller win a race."""
        marked = await self.session.scalar(
            self.scoped.update(Account)
            .where(Account.id == account_id, Account.indexed_at.is_(None))
            .values(indexed_at=func.now())
            .returning(Account.id)
        )
        if marked is None:
            return None
        count = await self.session.scalar(
            self.scoped.select(func.count(), from_=Message).where(Message.account_id == account_id)
        )
        return int(count or 0)
