"""SQL of the sync engine: mailboxes, message rows and their attachments."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Text,
    bindparam,
    column,
    delete,
    func,
    insert,
    literal_column,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.sql.expression import ColumnElement

from mailsvc.kit.repository import TenantRepository
from mailsvc.models import Attachment, Mailbox, Message
from mailsvc.models.message import SEARCH_CONFIG

# to_tsvector refuses documents past 1 MB; the body part of the search document is
# capped well below that so one huge message can never fail a batch.
SEARCH_BODY_CHARS = 100_000


# A constant, never user input.
_CONFIG: ColumnElement[Any] = literal_column(f"'{SEARCH_CONFIG}'::regconfig")


def search_document(subject: str | None, addresses: str, body: str | None) -> ColumnElement[Any]:
    """The weighted `search_vector` of a message: subject A, addresses B, body C."""

    def weighted(text: str, weight: str) -> ColumnElement[Any]:
        vector = func.to_tsvector(_CONFIG, bindparam(None, text, type_=Text))
        return func.setweight(vector, literal_column(f"'{weight}'"))

    return (
        weighted(subject or "", "A")
        .op("||")(weighted(addresses, "B"))
        .op("||")(weighted((body or "")[:SEARCH_BODY_CHARS], "C"))
    )


class MailboxRepository(TenantRepository):
    async def for_account(self, account_id: uuid.UUID) -> list[Mailbox]:
        result = await self.session.scalars(
            select(Mailbox)
            .where(Mailbox.tenant_id == self.tenant_id, Mailbox.account_id == account_id)
            .order_by(Mailbox.name)
        )
        return list(result.all())

    async def has_synced(self, account_id: uuid.UUID) -> bool:
        """Whether any mailbox of the account has completed a sync pass."""
        found = await self.session.scalar(
            select(Mailbox.id)
            .where(
                Mailbox.tenant_id == self.tenant_id,
                Mailbox.account_id == account_id,
                Mailbox.last_synced_at.is_not(None),
            )
            .limit(1)
        )
        return found is not None

    async def get(self, account_id: uuid.UUID, mailbox_id: uuid.UUID) -> Mailbox | None:
        found: Mailbox | None = await self.session.scalar(
            select(Mailbox).where(
                Mailbox.tenant_id == self.tenant_id,
                Mailbox.account_id == account_id,
                Mailbox.id == mailbox_id,
            )
        )
        return found

    async def lock(self, mailbox_id: uuid.UUID) -> Mailbox | None:
        """The mailbox row, locked until commit (one writer per mailbox at a time)."""
        found: Mailbox | None = await self.session.scalar(
            select(Mailbox)
            .where(Mailbox.tenant_id == self.tenant_id, Mailbox.id == mailbox_id)
            .with_for_update()
        )
        return found

    async def add(self, mailbox: Mailbox) -> Mailbox:
        mailbox.tenant_id = self.tenant_id
        self.session.add(mailbox)
        await self.session.flush()
        return mailbox

    async def delete(self, mailbox_id: uuid.UUID) -> None:
        await self.session.execute(
            delete(Mailbox).where(Mailbox.tenant_id == self.tenant_id, Mailbox.id == mailbox_id)
        )

    async def set_fields(self, mailbox_id: uuid.UUID, **values: Any) -> None:
        await self.session.execute(
            update(Mailbox)
            .where(Mailbox.tenant_id == self.tenant_id, Mailbox.id == mailbox_id)
            .values(**values)
        )


class MessageRepository(TenantRepository):
    async def insert_many(self, rows: Sequence[dict[str, Any]]) -> dict[int, uuid.UUID]:
        """Insert message rows (skipping UIDs already stored); their ids by UID.

        `ON CONFLICT DO NOTHING` on (mailbox, uidvalidity, uid) makes a batch that is
        replayed after a crash a no-op instead of a duplicate.
        """
        if not rows:
            return {}
        statement = (
            pg_insert(Message)
            .values([{**row, "tenant_id": self.tenant_id} for row in rows])
            .on_conflict_do_nothing(
                index_elements=["tenant_id", "mailbox_id", "uidvalidity", "uid"]
            )
            .returning(Message.uid, Message.id)
        )
        result = await self.session.execute(statement)
        return {int(uid): message_id for uid, message_id in result.all()}

    async def insert_attachments(self, rows: Sequence[dict[str, Any]]) -> None:
        if rows:
            await self.session.execute(
                insert(Attachment).values([{**row, "tenant_id": self.tenant_id} for row in rows])
            )

    async def uids(self, mailbox_id: uuid.UUID) -> list[int]:
        result = await self.session.scalars(
            select(Message.uid).where(
                Message.tenant_id == self.tenant_id, Message.mailbox_id == mailbox_id
            )
        )
        return [int(uid) for uid in result.all()]

    async def count(self, mailbox_id: uuid.UUID) -> int:
        value = await self.session.scalar(
            select(func.count()).where(
                Message.tenant_id == self.tenant_id, Message.mailbox_id == mailbox_id
            )
        )
        return int(value or 0)

    async def update_flags(
        self, mailbox_id: uuid.UUID, changes: Sequence[tuple[int, list[str], int | None]]
    ) -> list[tuple[uuid.UUID, int, list[str], uuid.UUID | None]]:
        """Set flags (and modseq) by UID; returns (id, uid, flags, thread) of rows that changed."""
        if not changes:
            return []
        records = [
            {"uid": uid, "flags": sorted(flags), "modseq": modseq} for uid, flags, modseq in changes
        ]
        # One statement for any number of rows, each with its own ragged flag list.
        incoming = (
            func.jsonb_to_recordset(bindparam("records", type_=JSONB))
            .table_valued(
                column("uid", BigInteger),
                column("flags", ARRAY(Text)),
                column("modseq", BigInteger),
            )
            .render_derived(name="incoming", with_types=True)
        )
        statement = (
            update(Message)
            .where(
                Message.tenant_id == self.tenant_id,
                Message.mailbox_id == mailbox_id,
                Message.uid == incoming.c.uid,
                Message.flags != incoming.c.flags,
            )
            .values(flags=incoming.c.flags, modseq=func.coalesce(incoming.c.modseq, Message.modseq))
            .returning(Message.id, Message.uid, Message.flags, Message.thread_id)
        )
        result = await self.session.execute(statement, {"records": records})
        return [(row[0], int(row[1]), list(row[2]), row[3]) for row in result.all()]

    async def delete_uids(
        self, mailbox_id: uuid.UUID, uids: Sequence[int]
    ) -> list[tuple[uuid.UUID, int, uuid.UUID | None]]:
        """Delete by UID; returns (id, uid, thread) of the rows removed."""
        if not uids:
            return []
        result = await self.session.execute(
            delete(Message)
            .where(
                Message.tenant_id == self.tenant_id,
                Message.mailbox_id == mailbox_id,
                Message.uid.in_(list(uids)),
            )
            .returning(Message.id, Message.uid, Message.thread_id)
        )
        return [(row[0], int(row[1]), row[2]) for row in result.all()]

    async def delete_mailbox_messages(
        self, mailbox_id: uuid.UUID
    ) -> list[tuple[uuid.UUID, int, uuid.UUID | None]]:
        result = await self.session.execute(
            delete(Message)
            .where(Message.tenant_id == self.tenant_id, Message.mailbox_id == mailbox_id)
            .returning(Message.id, Message.uid, Message.thread_id)
        )
        return [(row[0], int(row[1]), row[2]) for row in result.all()]

    async def newest_internal_date(self, mailbox_id: uuid.UUID) -> datetime | None:
        value: datetime | None = await self.session.scalar(
            select(func.max(Message.internal_date)).where(
                Message.tenant_id == self.tenant_id, Message.mailbox_id == mailbox_id
            )
        )
        return value
