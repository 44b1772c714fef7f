"""SQL of the messages API: filtered, keyset-paginated lists, search, single messages."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Row,
    Select,
    Table,
    and_,
    bindparam,
    delete,
    exists,
    false,
    func,
    null,
    or_,
    select,
    true,
    tuple_,
    update,
)
from sqlalchemy.orm import selectinload
from sqlalchemy.sql.expression import ColumnElement

from mailsvc.kit.repository import TenantRepository
from mailsvc.models import Attachment, Mailbox, Message
from mailsvc.search.repository import (
    address_matches,
    headline,
    matches_text,
    rank,
    subject_matches,
)


@dataclass(frozen=True, slots=True, kw_only=True)
class MessageFilter:
    """Which messages a list or search returns; unset fields do not filter."""

    account_id: uuid.UUID | None = None
    mailbox_ids: tuple[uuid.UUID, ...] | None = None
    thread_id: uuid.UUID | None = None
    unread: bool | None = None
    flagged: bool | None = None
    has_attachments: bool | None = None
    from_: tuple[str, ...] = ()
    to: tuple[str, ...] = ()
    subject: tuple[str, ...] = ()
    not_from: tuple[str, ...] = ()
    not_to: tuple[str, ...] = ()
    not_subject: tuple[str, ...] = ()
    received_after: datetime | None = None
    received_before: datetime | None = None
    text: str = ""


@dataclass(frozen=True, slots=True)
class Position:
    """Where a page ended: its last row's sort key."""

    key: datetime | float
    id: uuid.UUID


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
    Message.has_attachments,
    Message.size,
)


def _has_flag(flag: str) -> ColumnElement[bool]:
    return Message.flags.contains([flag])


def message_conditions(tenant_id: str, filters: MessageFilter) -> list[ColumnElement[bool]]:
    where: list[ColumnElement[bool]] = [Message.tenant_id == tenant_id]
    if filters.account_id is not None:
        where.append(Message.account_id == filters.account_id)
    if filters.mailbox_ids is not None:
        where.append(
            Message.mailbox_id.in_(filters.mailbox_ids) if filters.mailbox_ids else false()
        )
    if filters.thread_id is not None:
        where.append(Message.thread_id == filters.thread_id)
    if filters.unread is not None:
        seen = _has_flag("\\Seen")
        where.append(~seen if filters.unread else seen)
    if filters.flagged is not None:
        flagged = _has_flag("\\Flagged")
        where.append(flagged if filters.flagged else ~flagged)
    if filters.has_attachments is not None:
        where.append(Message.has_attachments.is_(filters.has_attachments))
    if filters.received_after is not None:
        where.append(Message.internal_date >= filters.received_after)
    if filters.received_before is not None:
        where.append(Message.internal_date < filters.received_before)
    where += [address_matches((Message.from_,), value) for value in filters.from_]
    recipients = (Message.to, Message.cc, Message.bcc)
    where += [address_matches(recipients, value) for value in filters.to]
    where += [subject_matches(term) for term in filters.subject]
    where += [~address_matches((Message.from_,), value) for value in filters.not_from]
    where += [~address_matches(recipients, value) for value in filters.not_to]
    where += [~subject_matches(term) for term in filters.not_subject]
    if filters.text:
        where.append(matches_text(filters.text))
    return where


class MessageRepository(TenantRepository):
    """Reads for the messages API (the sync engine writes through its own repository)."""

    async def page(
        self,
        filters: MessageFilter,
        *,
        limit: int,
        after: Position | None,
        order: str,
        highlight: bool,
    ) -> Sequence[Row[Any]]:
        """Up to `limit` summary rows after `after`; the last column is the sort key.

        Keyset order is (sort key, id), both descending for `newest` and `relevance`,
        ascending for `oldest`: a message that arrives while a client pages sorts
        before the pages already read and is never returned twice or skipped.
        """
        key: ColumnElement[Any] = (
            rank(filters.text) if order == "relevance" else Message.internal_date  # type: ignore[assignment]
        )
        columns: list[Any] = [*_SUMMARY_COLUMNS]
        if highlight and filters.text:
            columns.append(headline(filters.text).label("highlight"))
        else:
            columns.append(null().label("highlight"))
        columns.append(key.label("sort_key"))
        where = message_conditions(self.tenant_id, filters)
        descending = order != "oldest"
        if after is not None:
            position = tuple_(key, Message.id)
            bound = tuple_(after.key, after.id)
            where.append(position < bound if descending else position > bound)
        statement: Select[Any] = select(*columns).where(and_(true(), *where))
        if descending:
            statement = statement.order_by(key.desc(), Message.id.desc())
        else:
            statement = statement.order_by(key.asc(), Message.id.asc())
        result = await self.session.execute(statement.limit(limit))
        rows: Sequence[Row[Any]] = result.all()
        return rows

    async def summary(self, message_id: uuid.UUID) -> Row[Any] | None:
        """The summary columns of one message (fresh from the database)."""
        columns: list[Any] = [*_SUMMARY_COLUMNS]
        statement: Select[Any] = select(*columns).where(
            Message.tenant_id == self.tenant_id, Message.id == message_id
        )
        row: Row[Any] | None = (await self.session.execute(statement)).first()
        return row

    async def get(self, message_id: uuid.UUID) -> Message | None:
        """One message with its attachments."""
        found: Message | None = await self.session.scalar(
            select(Message)
            .where(Message.tenant_id == self.tenant_id, Message.id == message_id)
            .options(selectinload(Message.attachments))
        )
        return found

    async def get_many(self, message_ids: Sequence[uuid.UUID]) -> list[Message]:
        result = await self.session.scalars(
            select(Message).where(
                Message.tenant_id == self.tenant_id, Message.id.in_(list(message_ids))
            )
        )
        return list(result.all())

    async def attachment(
        self, message_id: uuid.UUID, attachment_id: uuid.UUID
    ) -> tuple[Message, Attachment] | None:
        row = (
            await self.session.execute(
                select(Message, Attachment)
                .join(
                    Attachment,
                    and_(
                        Attachment.message_id == Message.id,
                        Attachment.tenant_id == Message.tenant_id,
                    ),
                )
                .where(
                    Message.tenant_id == self.tenant_id,
                    Message.id == message_id,
                    Attachment.id == attachment_id,
                )
            )
        ).first()
        return None if row is None else (row[0], row[1])

    async def mailbox_ids(
        self, *, account_id: uuid.UUID | None, role: str | None, name: str | None
    ) -> tuple[uuid.UUID, ...]:
        """The mailboxes with this role (or name), in one account or all of the tenant's."""
        where: list[ColumnElement[bool]] = [Mailbox.tenant_id == self.tenant_id]
        if account_id is not None:
            where.append(Mailbox.account_id == account_id)
        if role is not None:
            where.append(Mailbox.special_use == role)
        if name is not None:
            where.append(or_(Mailbox.name == name, func.lower(Mailbox.name) == name.lower()))
        result = await self.session.scalars(select(Mailbox.id).where(*where))
        return tuple(result.all())

    async def mailbox(self, mailbox_id: uuid.UUID) -> Mailbox | None:
        found: Mailbox | None = await self.session.scalar(
            select(Mailbox).where(Mailbox.tenant_id == self.tenant_id, Mailbox.id == mailbox_id)
        )
        return found

    async def mailbox_with_role(self, account_id: uuid.UUID, role: str) -> Mailbox | None:
        found: Mailbox | None = await self.session.scalar(
            select(Mailbox)
            .where(
                Mailbox.tenant_id == self.tenant_id,
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
            delete(Message).where(
                Message.tenant_id == self.tenant_id,
                Message.mailbox_id == mailbox_id,
                Message.uidvalidity == uidvalidity,
                Message.uid.in_([uid for _, uid in moves]),
                Message.id.not_in([message_id for message_id, _ in moves]),
            )
        )
        # Core, not ORM: one executemany (the ORM's bulk path wants primary-key rows).
        table: Table = Message.__table__  # type: ignore[assignment]
        await self.session.execute(
            update(table)
            .where(table.c.tenant_id == self.tenant_id, table.c.id == bindparam("moved_id"))
            .values(mailbox_id=mailbox_id, uid=bindparam("new_uid"), uidvalidity=uidvalidity),
            [{"moved_id": message_id, "new_uid": uid} for message_id, uid in moves],
        )

    async def has_mailbox(self, mailbox_id: uuid.UUID) -> bool:
        found = await self.session.scalar(
            select(exists().where(Mailbox.tenant_id == self.tenant_id, Mailbox.id == mailbox_id))
        )
        return bool(found)
