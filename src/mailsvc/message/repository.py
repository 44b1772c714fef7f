"""SQL of the message write paths: one message, attachments, mailboxes, moves.

The hot reads (lists, search pages, a whole message) are read_repository.py's.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import (
    Row,
    Select,
    Table,
    bindparam,
)
from sqlalchemy.orm import selectinload

from mailsvc.kit.repository import TenantRepository
from mailsvc.models import Attachment, Mailbox, Message

_SUMMARY_COLUMNS = (
    Message.id,
    Message.account_id,
    Message.mailbox_id,
    Message.thread_id,
    Message.subject,
    Message.from_,
    Message.to,
    Message.cc,
    Message.snippet,
    Message.date,
    Message.internal_date,
    Message.flags,
    Message.labels,
    Message.has_attachments,
    Message.size,
)


class MessageRepository(TenantRepository):
    """Reads for the messages API (the sync engine writes through its own repository)."""

    async def thread_messages(self, thread_id: uuid.UUID, *, limit: int) -> Sequence[Row[Any]]:
        """Summary rows of the thread's first `limit` messages, oldest first."""
        columns: list[Any] = [*_SUMMARY_COLUMNS]
        statement: Select[Any] = (
            self.scoped.select(*columns)
            .where(Message.thread_id == thread_id)
            .order_by(Message.internal_date.asc(), Message.id.asc())
            .limit(limit)
        )
        rows: Sequence[Row[Any]] = (await self.session.execute(statement)).all()
        return rows

    async def summary(self, message_id: uuid.UUID) -> Row[Any] | None:
        """The summary columns of one message (fresh from the database)."""
        columns: list[Any] = [*_SUMMARY_COLUMNS]
        statement: Select[Any] = self.scoped.select(*columns).where(Message.id == message_id)
        row: Row[Any] | None = (await self.session.execute(statement)).first()
        return row

    async def get(self, message_id: uuid.UUID) -> Message | None:
        """One message with its attachments."""
        found: Message | None = await self.session.scalar(
            self.scoped.select(Message)
            .where(Message.id == message_id)
            .options(selectinload(Message.attachments))
        )
        return found

    async def get_many(self, message_ids: Sequence[uuid.UUID]) -> list[Message]:
        result = await self.session.scalars(
            self.scoped.select(Message).where(Message.id.in_(list(message_ids)))
        )
        return list(result.all())

    async def attachment(
        self, message_id: uuid.UUID, attachment_id: uuid.UUID
    ) -> tuple[Message, Attachment] | None:
        row = (
            await self.session.execute(
                self.scoped.select(Message, Attachment)
                .join(Attachment, Attachment.message_id == Message.id)
                .where(Message.id == message_id, Attachment.id == attachment_id)
            )
        ).first()
        return None if row is None else (row[0], row[1])

    async def mailbox(self, mailbox_id: uuid.UUID) -> Mailbox | None:
        found: Mailbox | None = await self.session.scalar(
            self.scoped.select(Mailbox).where(Mailbox.id == mailbox_id)
        )
        return found

    async def mailbox_with_role(self, account_id: uuid.UUID, role: str) -> Mailbox | None:
        found: Mailbox | None = await self.session.scalar(
            self.scoped.select(Mailbox)
            .where(
                Mailbox.account_id == account_id,
                Mailbox.special_use == role,
                Mailbox.selectable.is_(True),
            )
            .order_by(Mailbox.name)
            .limit(1)
        )
        return found

    async def relocate(
        self,
        moves: Sequence[tuple[uuid.UUID, int]],
        *,
        mailbox_id: uuid.UUID,
        uidvalidity: int,
    ) -> None:
        """Point moved rows at their new mailbox and UID; their ids stay the same.

        A row the sync may already have stored for a new UID (it raced the move) is
        the same message under another id: it goes, so the unique key holds.
        """
        if not moves:
            return
        await self.session.execute(
            self.scoped.delete(Message).where(
                Message.mailbox_id == mailbox_id,
                Message.uidvalidity == uidvalidity,
                Message.uid.in_([uid for _, uid in moves]),
                Message.id.not_in([message_id for message_id, _ in moves]),
            )
        )
        # Core, not ORM: one executemany (the ORM's bulk path wants primary-key rows).
        table: Table = Message.__table__  # type: ignore[assignment]
        await self.session.execute(
            self.scoped.update(table)
            .where(table.c.id == bindparam("moved_id"))
            .values(mailbox_id=mailbox_id, uid=bindparam("new_uid"), uidvalidity=uidvalidity),
            [{"moved_id": message_id, "new_uid": uid} for message_id, uid in moves],
        )
