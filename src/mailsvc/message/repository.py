"""SQL of the messages API: filtered, keyset-paginated lists, search, single messages."""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    Row,
    Select,
    Table,
    Text,
    and_,
    bindparam,
    cast,
    false,
    func,
    null,
    or_,
    select,
    tuple_,
)
from sqlalchemy.dialects.postgresql import ARRAY, UUID
from sqlalchemy.orm import selectinload
from sqlalchemy.sql.expression import ColumnElement

from mailsvc.kit.repository import TenantRepository
from mailsvc.models import Attachment, Mailbox, Message
from mailsvc.search.backend import Hit
from mailsvc.search.excerpt import EXCERPT_SOURCE_CHARS
from mailsvc.search.filter import MessageFilter, Position

__all__ = [
    "JsonPage",
    "MessageFilter",
    "MessageRepository",
    "Position",
    "SearchSummary",
    "message_conditions",
    "with_highlight",
]


@dataclass(frozen=True, slots=True)
class JsonPage:
    """A page of summaries as a JSON array, and where it ended when more follow."""

    items: str
    last: Position | None


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


def _summary_json(*, highlight: bool) -> ColumnElement[str]:
    """One `MessageSummary` (schemas.py) as JSON text, built by PostgreSQL; with
    `highlight: null`, or without the key for a search to add it (`with_highlight`).

    Address columns hold `{"name", "address"}` objects already (sync/writer.py), so
    they pass through; tests/message/test_list_json.py holds this to the schema.
    """
    return cast(
        func.json_build_object(
            "id", Message.id,
            "account_id", Message.account_id,
            "mailbox_id", Message.mailbox_id,
            "thread_id", Message.thread_id,
            "subject", Message.subject,
            "from", Message.from_[0],
            "to", Message.to,
            "cc", Message.cc,
            "snippet", Message.snippet,
            "date", Message.date,
            "received_at", Message.internal_date,
            "flags", Message.flags,
            "unread", ~_has_flag("\\Seen"),
            "flagged", _has_flag("\\Flagged"),
            "has_attachments", Message.has_attachments,
            "size", Message.size,
            *(("highlight", null()) if highlight else ()),
        ),
        Text,
    )  # fmt: skip


def _has_flag(flag: str) -> ColumnElement[bool]:
    return Message.flags.contains([flag])


# Built once: constructing this expression per request cost more than the query.
_SUMMARY_JSON = _summary_json(highlight=True)
_SEARCH_SUMMARY_JSON = _summary_json(highlight=False)


def with_highlight(summary: str, highlight: str | None) -> str:
    """A search's summary JSON (`MessageRepository.summaries_json`) completed with
    its `highlight`."""
    return f'{summary[:-1]},"highlight":{json.dumps(highlight)}}}'


@dataclass(frozen=True, slots=True)
class SearchSummary:
    """A confirmed search hit: its summary JSON without `highlight`, and the start
    of its text body when highlights were asked for."""

    json: str
    body: str | None


def message_conditions(filters: MessageFilter) -> list[ColumnElement[bool]]:
    """The WHERE conditions of the plain fields of `filters` on messages.

    The full-text part (`MessageFilter.searches`) is the search backend's: its hits
    are joined back through `MessageRepository.summaries_json` with these conditions.
    """
    where: list[ColumnElement[bool]] = []
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
    return where


class MessageRepository(TenantRepository):
    """Reads for the messages API (the sync engine writes through its own repository)."""

    def _page_statement(
        self,
        columns: list[Any],
        filters: MessageFilter,
        *,
        limit: int,
        after: Position | None,
        order: str,
    ) -> Select[Any]:
        """`columns` of a list page's rows, then its keyset columns `sort_key` and `id`.

        Keyset order is (received time, id), both descending for `newest`, ascending
        for `oldest`: a message that arrives while a client pages sorts before the
        pages already read and is never returned twice or skipped.
        """
        key = Message.internal_date
        where = message_conditions(filters)
        descending = order != "oldest"
        if after is not None:
            position = tuple_(key, Message.id)
            bound = tuple_(after.key, after.id)
            where.append(position < bound if descending else position > bound)
        ordering = (key.desc(), Message.id.desc()) if descending else (key.asc(), Message.id.asc())
        statement: Select[Any] = (
            self.scoped.select(*columns, key.label("sort_key"), Message.id.label("position_id"))
            .where(*where)
            .order_by(*ordering)
            .limit(limit)
        )
        return statement

    async def page(
        self, filters: MessageFilter, *, limit: int, after: Position | None, order: str
    ) -> Sequence[Row[Any]]:
        """Up to `limit` summary rows of a list (no full-text part) after `after`."""
        statement = self._page_statement(
            [*_SUMMARY_COLUMNS], filters, limit=limit, after=after, order=order
        )
        rows: Sequence[Row[Any]] = (await self.session.execute(statement)).all()
        return rows

    async def page_json(
        self, filters: MessageFilter, *, limit: int, after: Position | None, order: str
    ) -> JsonPage:
        """A list page as the JSON array of its `MessageSummary` items.

        PostgreSQL builds each item: turning 50 rows into Python objects and back into
        JSON was most of a list request's CPU (bench/api.py). One row more than
        `limit` is read to know whether a next page exists.
        """
        statement = self._page_statement(
            [_SUMMARY_JSON], filters, limit=limit + 1, after=after, order=order
        )
        rows = (await self.session.execute(statement)).all()
        more = len(rows) > limit
        last = rows[limit - 1] if more else None
        return JsonPage(
            items="[" + ",".join(row[0] for row in rows[:limit]) + "]",
            last=None if last is None else Position(key=last.sort_key, id=last.position_id),
        )

    async def summaries_json(
        self, hits: Sequence[Hit], filters: MessageFilter, *, bodies: bool
    ) -> dict[uuid.UUID, SearchSummary]:
        """The search hits that are this tenant's stored messages and still match the
        plain fields of `filters`, with the start of their bodies when `bodies`.

        This is the join that keeps a stale or foreign index honest: a message deleted
        since it was indexed, moved out of the searched mailboxes, flagged otherwise,
        or of another tenant, is not returned whatever the index said.
        """
        if not hits:
            return {}
        found = (
            func.unnest(cast([hit.message_id for hit in hits], ARRAY(UUID(as_uuid=True))))
            .table_valued("hit_id")
            .render_derived(name="hit")
        )
        body = func.left(Message.text_body, EXCERPT_SOURCE_CHARS) if bodies else null()
        statement = (
            self.scoped.select(found.c.hit_id, _SEARCH_SUMMARY_JSON, body)
            .select_from(
                found.join(Message, and_(Message.id == found.c.hit_id, self.scoped.owns(Message)))
            )
            .where(*message_conditions(filters))
        )
        rows = (await self.session.execute(statement)).all()
        return {row[0]: SearchSummary(row[1], row[2]) for row in rows}

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

    async def mailbox_ids(
        self, *, account_id: uuid.UUID | None, role: str | None, name: str | None
    ) -> tuple[uuid.UUID, ...]:
        """The mailboxes with this role (or name), in one account or all of the tenant's."""
        where: list[ColumnElement[bool]] = []
        if account_id is not None:
            where.append(Mailbox.account_id == account_id)
        if role is not None:
            where.append(Mailbox.special_use == role)
        if name is not None:
            where.append(or_(Mailbox.name == name, func.lower(Mailbox.name) == name.lower()))
        result = await self.session.scalars(self.scoped.select(Mailbox.id).where(*where))
        return tuple(result.all())

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

    async def has_any(self) -> bool:
        """Whether the tenant has any stored message."""
        found = await self.session.scalar(select(self.scoped.select(Message.id).exists()))
        return bool(found)

    async def has_mailbox(self, mailbox_id: uuid.UUID) -> bool:
        mailbox = self.scoped.select(Mailbox.id).where(Mailbox.id == mailbox_id)
        found = await self.session.scalar(select(mailbox.exists()))
        return bool(found)
