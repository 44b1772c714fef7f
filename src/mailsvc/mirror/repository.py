"""SQL of the mirror: mailboxes, message rows and their attachments as the server holds them."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    Integer,
    Table,
    Text,
    any_,
    bindparam,
    column,
    func,
    literal_column,
    not_,
    or_,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, UUID

from mailsvc.kit.repository import TenantRepository, cross_tenant
from mailsvc.models import Attachment, Mailbox, Message

# What a batch hands over per message: the stored columns, less tenant_id (the
# scope adds it).
_INCOMING = (
    func.jsonb_to_recordset(bindparam("rows", type_=JSONB))
    .table_valued(
        column("id", UUID),
        column("account_id", UUID),
        column("mailbox_id", UUID),
        column("uid", BigInteger),
        column("uidvalidity", BigInteger),
        column("modseq", BigInteger),
        column("message_id_header", Text),
        column("in_reply_to", Text),
        column("references", ARRAY(Text)),
        column("subject", Text),
        column("from_", JSONB),
        column("sender", JSONB),
        column("to", JSONB),
        column("cc", JSONB),
        column("bcc", JSONB),
        column("reply_to", JSONB),
        column("date", DateTime(timezone=True)),
        column("internal_date", DateTime(timezone=True)),
        column("size", Integer),
        column("flags", ARRAY(Text)),
        column("thread_id", UUID),
        column("gm_thread_id", BigInteger),
        column("gm_message_id", BigInteger),
        column("labels", ARRAY(Text)),
        column("snippet", Text),
        column("text_body", Text),
        column("html_body", Text),
        column("has_attachments", Boolean),
        column("parse_error", Text),
    )
    .render_derived(name="incoming", with_types=True)
)
# Each stored column, by name, as INSERT ... SELECT reads it from the batch.
_STORED = {c.name: c for c in _INCOMING.c}
# Core, not ORM: the ORM's bulk path does not take INSERT ... SELECT.
_MESSAGES: Table = Message.__table__  # type: ignore[assignment]
# An unread message: the predicate of the partial index `ix_messages_unseen`, written
# out as a constant so the planner sees that the index covers the query.
UNSEEN = not_(literal_column("'\\Seen'::text", Text) == any_(Message.flags))


@dataclass(frozen=True, slots=True)
class ReportedState:
    """What a server reported of one stored message, by UID; None: not reported.

    FETCH answers of a sync carry FLAGS (and X-GM-LABELS on Gmail); the answer to a
    STORE of labels carries the labels alone, and leaves the flags as stored.
    """

    uid: int
    flags: list[str] | None
    modseq: int | None = None
    labels: list[str] | None = None
    # Gmail's ids, filled in where a row lacks them (rows stored before labels were).
    gm_message_id: int | None = None
    gm_thread_id: int | None = None


@dataclass(frozen=True, slots=True)
class ChangedRow:
    """A message row whose flags or labels an update changed, as it is now."""

    id: uuid.UUID
    uid: int
    flags: list[str]
    labels: list[str] | None
    thread_id: uuid.UUID | None


class MailboxRepository(TenantRepository):
    async def for_account(self, account_id: uuid.UUID) -> list[Mailbox]:
        result = await self.session.scalars(
            self.scoped.select(Mailbox)
            .where(Mailbox.account_id == account_id)
            .order_by(Mailbox.name)
        )
        return list(result.all())

    async def has_synced(self, account_id: uuid.UUID) -> bool:
        """Whether any mailbox of the account has completed a sync pass."""
        found = await self.session.scalar(
            self.scoped.select(Mailbox.id)
            .where(
                Mailbox.account_id == account_id,
                Mailbox.last_synced_at.is_not(None),
            )
            .limit(1)
        )
        return found is not None

    async def lock(self, mailbox_id: uuid.UUID) -> Mailbox | None:
        """The mailbox row, locked until commit (one writer per mailbox at a time)."""
        found: Mailbox | None = await self.session.scalar(
            self.scoped.select(Mailbox).where(Mailbox.id == mailbox_id).with_for_update()
        )
        return found

    async def add(self, mailbox: Mailbox) -> Mailbox:
        return await self.scoped.add(mailbox)

    async def delete(self, mailbox_id: uuid.UUID) -> None:
        await self.session.execute(self.scoped.delete(Mailbox).where(Mailbox.id == mailbox_id))

    async def refresh_unseen(self, mailbox_ids: Sequence[uuid.UUID]) -> None:
        """Recount `messages_unseen` of these mailboxes from their stored flags.

        The rows are locked first, in id order, and counted in the next statement:
        its snapshot then holds every change committed by a writer that held the lock
        before, so the last writer to count always counts everything.
        """
        ids = sorted(set(mailbox_ids))
        if not ids:
            return
        await self.session.execute(
            self.scoped.select(Mailbox.id)
            .where(Mailbox.id.in_(ids))
            .order_by(Mailbox.id)
            .with_for_update()
        )
        unseen = (
            self.scoped.select(func.count(), from_=Message)
            .where(Message.mailbox_id == Mailbox.id, UNSEEN)
            .scalar_subquery()
        )
        await self.session.execute(
            self.scoped.update(Mailbox).where(Mailbox.id.in_(ids)).values(messages_unseen=unseen)
        )

    async def set_fields(self, mailbox_id: uuid.UUID, **values: Any) -> None:
        await self.session.execute(
            self.scoped.update(Mailbox).where(Mailbox.id == mailbox_id).values(**values)
        )


class MirrorRepository(TenantRepository):
    """Message rows as the server holds them: stored in batches, flags, expunges."""

    async def insert_many(self, rows: Sequence[dict[str, Any]]) -> dict[int, uuid.UUID]:
        """Insert a batch of messages (UIDs already stored are skipped); ids by UID.

        `rows` are JSON-ready dicts with the keys of `_INCOMING` (ids and dates as
        strings): the whole batch travels as one JSON parameter.
        """
        if not rows:
            return {}
        # `ON CONFLICT DO NOTHING` makes a batch replayed after a crash a no-op.
        statement = (
            self.scoped.insert_select(_MESSAGES, _STORED)
            .on_conflict_do_nothing(
                index_elements=["tenant_id", "mailbox_id", "uidvalidity", "uid"]
            )
            .returning(_MESSAGES.c.uid, _MESSAGES.c.id)
        )
        result = await self.session.execute(statement, {"rows": list(rows)})
        return {int(uid): message_id for uid, message_id in result.all()}

    @cross_tenant(reason="ANALYZE gathers statistics of the whole messages table")
    async def refresh_statistics(self) -> None:
        """ANALYZE the messages table (operator-level: statistics span all tenants).

        A first mirror grows the table far faster than autovacuum re-analyzes it; with
        statistics from when it was (nearly) empty the planner answers the threading
        lookups with sequential scans, and each batch costs more than the one before.
        """
        await self.session.execute(text("ANALYZE messages"))

    async def insert_attachments(self, rows: Sequence[dict[str, Any]]) -> None:
        await self.scoped.insert_many(Attachment, rows)

    async def uids(self, mailbox_id: uuid.UUID) -> list[int]:
        result = await self.session.scalars(
            self.scoped.select(Message.uid).where(Message.mailbox_id == mailbox_id)
        )
        return [int(uid) for uid in result.all()]

    async def count(self, mailbox_id: uuid.UUID) -> int:
        value = await self.session.scalar(
            self.scoped.select(func.count(), from_=Message).where(Message.mailbox_id == mailbox_id)
        )
        return int(value or 0)

    async def update_reported(
        self, mailbox_id: uuid.UUID, reported: Sequence[ReportedState]
    ) -> list[ChangedRow]:
        """Set flags and labels (and modseq) by UID as the server reported them; the
        rows whose flags or labels changed. An item not reported keeps its value."""
        if not reported:
            return []
        records = [
            {
                "uid": state.uid,
                "flags": None if state.flags is None else sorted(state.flags),
                "modseq": state.modseq,
                "labels": None if state.labels is None else sorted(state.labels),
                "gm_message_id": state.gm_message_id,
                "gm_thread_id": state.gm_thread_id,
            }
            for state in reported
        ]
        # One statement for any number of rows, each with its own ragged lists.
        incoming = (
            func.jsonb_to_recordset(bindparam("records", type_=JSONB))
            .table_valued(
                column("uid", BigInteger),
                column("flags", ARRAY(Text)),
                column("modseq", BigInteger),
                column("labels", ARRAY(Text)),
                column("gm_message_id", BigInteger),
                column("gm_thread_id", BigInteger),
            )
            .render_derived(name="incoming", with_types=True)
        )
        flags = func.coalesce(incoming.c.flags, Message.flags)
        labels = func.coalesce(incoming.c.labels, Message.labels)
        statement = (
            self.scoped.update(Message)
            .where(
                Message.mailbox_id == mailbox_id,
                Message.uid == incoming.c.uid,
                or_(
                    Message.flags != flags,
                    Message.labels.is_distinct_from(labels),
                ),
            )
            .values(
                flags=flags,
                labels=labels,
                modseq=func.coalesce(incoming.c.modseq, Message.modseq),
                gm_message_id=func.coalesce(Message.gm_message_id, incoming.c.gm_message_id),
                gm_thread_id=func.coalesce(Message.gm_thread_id, incoming.c.gm_thread_id),
            )
            .returning(Message.id, Message.uid, Message.flags, Message.labels, Message.thread_id)
        )
        result = await self.session.execute(statement, {"records": records})
        return [
            ChangedRow(
                id=row[0],
                uid=int(row[1]),
                flags=list(row[2]),
                labels=None if row[3] is None else list(row[3]),
                thread_id=row[4],
            )
            for row in result.all()
        ]

    async def lacks_labels(self, mailbox_id: uuid.UUID) -> bool:
        """Whether the mailbox's first stored message has no labels: it was stored
        before mailsvc fetched Gmail's labels, and so were the others of its time.

        One probe of the unique (mailbox, uidvalidity, uid) index: rows stored since
        carry labels, and a backfill labels every row at once.
        """
        first = await self.session.scalar(
            self.scoped.select(Message.labels.is_(None))
            .where(Message.mailbox_id == mailbox_id)
            .order_by(Message.uidvalidity, Message.uid)
            .limit(1)
        )
        return bool(first)

    async def delete_uids(
        self, mailbox_id: uuid.UUID, uids: Sequence[int]
    ) -> list[tuple[uuid.UUID, int, uuid.UUID | None]]:
        """Delete by UID; returns (id, uid, thread) of the rows removed."""
        if not uids:
            return []
        result = await self.session.execute(
            self.scoped.delete(Message)
            .where(Message.mailbox_id == mailbox_id, Message.uid.in_(list(uids)))
            .returning(Message.id, Message.uid, Message.thread_id)
        )
        return [(row[0], int(row[1]), row[2]) for row in result.all()]

    async def delete_mailbox_messages(
        self, mailbox_id: uuid.UUID
    ) -> list[tuple[uuid.UUID, int, uuid.UUID | None]]:
        result = await self.session.execute(
            self.scoped.delete(Message)
            .where(Message.mailbox_id == mailbox_id)
            .returning(Message.id, Message.uid, Message.thread_id)
        )
        return [(row[0], int(row[1]), row[2]) for row in result.all()]
