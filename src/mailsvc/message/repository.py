"""SQL of the messages API: filtered, keyset-paginated lists, search, single messages."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Row,
    Select,
    Table,
    Text,
    and_,
    bindparam,
    case,
    cast,
    false,
    func,
    null,
    or_,
    select,
    tuple_,
)
from sqlalchemy.orm import selectinload
from sqlalchemy.sql.expression import ColumnElement

from mailsvc.kit.repository import TenantRepository
from mailsvc.models import Attachment, Mailbox, Message
from mailsvc.search.query import phrase_words
from mailsvc.search.repository import (
    HIGHLIGHT_START,
    HIGHLIGHT_STOP,
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


def _marked_excerpt(excerpt: ColumnElement[Any]) -> ColumnElement[Any]:
    """`ts_headline` output HTML-escaped with its markers as `<mark>` (as `_marked` does)."""
    escaped: ColumnElement[Any] = excerpt
    for raw, entity in (("&", "&amp;"), ("<", "&lt;"), (">", "&gt;")):
        escaped = func.replace(escaped, raw, entity)
    marked = func.replace(
        func.replace(escaped, HIGHLIGHT_START, "<mark>"), HIGHLIGHT_STOP, "</mark>"
    )
    return case((func.strpos(excerpt, HIGHLIGHT_START) > 0, marked), else_=null())


def _summary_json(highlight: ColumnElement[Any]) -> ColumnElement[str]:
    """One `MessageSummary` (schemas.py) as JSON text, built by PostgreSQL.

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
            "highlight", highlight,
        ),
        Text,
    )  # fmt: skip


def _has_flag(flag: str) -> ColumnElement[bool]:
    return Message.flags.contains([flag])


# Built once: constructing this expression per request cost more than the query.
_SUMMARY_JSON = _summary_json(null())


def message_conditions(filters: MessageFilter) -> list[ColumnElement[bool]]:
    """The WHERE conditions of `filters` on a scoped statement over messages."""
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

    def _page_statement(
        self,
        columns: list[Any],
        filters: MessageFilter,
        *,
        limit: int,
        after: Position | None,
        order: str,
    ) -> Select[Any]:
        """`columns` of a page's rows, then its keyset columns `sort_key` and `id`.

        Keyset order is (sort key, id), both descending for `newest` and `relevance`,
        ascending for `oldest`: a message that arrives while a client pages sorts
        before the pages already read and is never returned twice or skipped.
        """
        key: ColumnElement[Any] = (
            rank(filters.text) if order == "relevance" else Message.internal_date  # type: ignore[assignment]
        )
        # The text condition comes last, and a phrase search may replace it.
        where = message_conditions(replace(filters, text=""))
        descending = order != "oldest"
        if after is not None:
            position = tuple_(key, Message.id)
            bound = tuple_(after.key, after.id)
            where.append(position < bound if descending else position > bound)
        relaxed = phrase_words(filters.text) if order != "relevance" else None
        if relaxed is not None:
            return self._phrase_statement(
                columns, filters.text, relaxed, where, key, descending=descending, limit=limit
            )
        if filters.text:
            where.append(matches_text(filters.text))
        ordering = (key.desc(), Message.id.desc()) if descending else (key.asc(), Message.id.asc())
        statement: Select[Any] = (
            self.scoped.select(*columns, key.label("sort_key"), Message.id.label("position_id"))
            .where(*where)
            .order_by(*ordering)
            .limit(limit)
        )
        return statement

    def _phrase_statement(
        self,
        columns: list[Any],
        text: str,
        relaxed: str,
        where: list[ColumnElement[bool]],
        key: ColumnElement[Any],
        *,
        descending: bool,
        limit: int,
    ) -> Select[Any]:
        """A phrase search as candidates in date order, each checked for the phrase.

        PostgreSQL estimates a phrase like the AND of its words; for a rare phrase of
        common words it then walks the date index and checks the phrase on every
        message (408 ms for 2 hits in bench/search.py). Here the GIN index finds the
        messages holding every word, they are sorted by date, and the phrase is
        checked in that order until the page is full: the cost is bounded by the
        candidates, and a common phrase stops early.
        """
        candidates_where = [*where, matches_text(relaxed)]
        ordering = (key.desc(), Message.id.desc()) if descending else (key.asc(), Message.id.asc())
        candidates = (
            self.scoped.select(Message.id.label("candidate_id"), key.label("candidate_key"))
            .where(*candidates_where)
            .order_by(*ordering)
            .offset(0)  # keeps the sorted candidates a subquery of their own
            .subquery("candidates")
        )
        candidate_key, candidate_id = candidates.c.candidate_key, candidates.c.candidate_id
        outer_order = (
            (candidate_key.desc(), candidate_id.desc())
            if descending
            else (candidate_key.asc(), candidate_id.asc())
        )
        # `columns` read messages, so the scope filters them already; the join keeps its
        # own `owns` because a table only joined would not be (and a reader of this join
        # cannot see what `columns` hold). PostgreSQL plans the repeat once.
        statement: Select[Any] = (
            self.scoped.select(
                *columns, candidate_key.label("sort_key"), candidate_id.label("position_id")
            )
            .select_from(
                candidates.join(
                    Message, and_(Message.id == candidate_id, self.scoped.owns(Message))
                )
            )
            .where(matches_text(text))
            .order_by(*outer_order)
            .limit(limit)
        )
        return statement

    async def page(
        self,
        filters: MessageFilter,
        *,
        limit: int,
        after: Position | None,
        order: str,
        highlight: bool,
    ) -> Sequence[Row[Any]]:
        """Up to `limit` summary rows after `after` (see `_page_statement`)."""
        excerpt = headline(filters.text) if highlight and filters.text else null()
        columns = [*_SUMMARY_COLUMNS, excerpt.label("highlight")]
        statement = self._page_statement(columns, filters, limit=limit, after=after, order=order)
        rows: Sequence[Row[Any]] = (await self.session.execute(statement)).all()
        return rows

    async def page_json(
        self,
        filters: MessageFilter,
        *,
        limit: int,
        after: Position | None,
        order: str,
        highlight: bool,
    ) -> JsonPage:
        """A page as `page` selects it, as the JSON array of its `MessageSummary` items.

        PostgreSQL builds each item: turning 50 rows into Python objects and back into
        JSON was most of a list request's CPU (bench/api.py). One row more than
        `limit` is read to know whether a next page exists.
        """
        item = (
            _summary_json(_marked_excerpt(headline(filters.text)))
            if highlight and filters.text
            else _SUMMARY_JSON
        )
        statement = self._page_statement([item], filters, limit=limit + 1, after=after, order=order)
        rows = (await self.session.execute(statement)).all()
        more = len(rows) > limit
        last = rows[limit - 1] if more else None
        return JsonPage(
            items="[" + ",".join(row[0] for row in rows[:limit]) + "]",
            last=None if last is None else Position(key=last.sort_key, id=last.position_id),
        )

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

    async def has_mailbox(self, mailbox_id: uuid.UUID) -> bool:
        mailbox = self.scoped.select(Mailbox.id).where(Mailbox.id == mailbox_id)
        found = await self.session.scalar(select(mailbox.exists()))
        return bool(found)
