"""SQL of the PostgreSQL search backend: documents, index states, and searches.

Every condition of a `MessageFilter` is compiled here onto the columns of
`message_search`; the text-search parts compare a vector with a tsquery built by
lexemes.py.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any, TypeAlias

from sqlalchemy import (
    REAL,
    Boolean,
    DateTime,
    SQLColumnExpression,
    Table,
    Text,
    and_,
    any_,
    bindparam,
    cast,
    column,
    false,
    func,
    literal,
    literal_column,
    or_,
    select,
    tuple_,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, TSQUERY, TSVECTOR, UUID
from sqlalchemy.sql.expression import ColumnElement

from mailsvc.kit.db import utcnow
from mailsvc.kit.repository import TenantRepository
from mailsvc.models import MessageSearch, SearchIndexStateRow
from mailsvc.search.filter import MessageFilter, Order, Position, labels_by_accounts
from mailsvc.search.postgres.lexemes import SCHEMA_VERSION, free_text_query, phrase_query
from mailsvc.search.words import FreeText, words

# How many rows a search in received order walks first, and at most, before it asks
# the text-search indexes for every match instead (`MessageSearchRepository._by_date`):
# about 1.5 ms and 25 ms on bench/search.py's mailbox.
_WALK_ROWS = 1_000
_MAX_WALK_ROWS = 20_000

_SEARCH: Table = MessageSearch.__table__  # type: ignore[assignment]


def _tsquery(query: str) -> ColumnElement[Any]:
    # A parameter cast by PostgreSQL's tsquery input, never to_tsquery: the words are
    # quoted already, and must not be parsed again.
    return cast(literal(query, Text), TSQUERY)


def _matches(vector: SQLColumnExpression[Any], query: str) -> ColumnElement[bool]:
    return vector.bool_op("@@")(_tsquery(query))


_Rows: TypeAlias = Any
"""The columns of `message_search`: the mapped class, or the `c` of a subquery."""


def _conditions(
    s: _Rows, filters: MessageFilter, free: FreeText | None
) -> list[ColumnElement[bool]]:
    """Every condition of `filters` on the rows of `s`; `free` is its parsed text."""
    where = _plain_conditions(s, filters) + _field_conditions(s, filters)
    if free is not None:
        text_query = free_text_query(free)
        where.append(false() if text_query is None else _matches(s.document, text_query))
    return where


def _plain_conditions(s: _Rows, filters: MessageFilter) -> list[ColumnElement[bool]]:
    """The conditions of the filter's plain fields on `message_search`."""
    where: list[ColumnElement[bool]] = []
    if filters.account_id is not None:
        where.append(s.account_id == filters.account_id)
    if filters.mailbox_ids is not None:
        where.append(_mailboxes(s, filters))
    if filters.labels:
        where.append(s.labels.contains(_labels(filters.labels)))
    if filters.thread_id is not None:
        where.append(s.thread_id == filters.thread_id)
    if filters.unread is not None:
        where.append(s.seen == (not filters.unread))
    if filters.flagged is not None:
        where.append(s.flagged == filters.flagged)
    if filters.has_attachments is not None:
        where.append(s.has_attachments == filters.has_attachments)
    if filters.received_after is not None:
        where.append(s.received_at >= filters.received_after)
    if filters.received_before is not None:
        where.append(s.received_at < filters.received_before)
    return where


def _labels(labels: Sequence[str]) -> ColumnElement[Any]:
    return cast(literal(list(labels), ARRAY(Text)), ARRAY(Text))


def _mailboxes(s: _Rows, filters: MessageFilter) -> ColumnElement[bool]:
    """The chosen mailboxes: their ids, or (Gmail label folders) their labels on
    their accounts (`MessageFilter`)."""
    assert filters.mailbox_ids is not None
    alternatives: list[ColumnElement[bool]] = []
    if filters.mailbox_ids:
        alternatives.append(s.mailbox_id.in_(filters.mailbox_ids))
    for label, accounts in labels_by_accounts(filters.label_folders).items():
        alternatives.append(and_(s.labels.contains(_labels([label])), s.account_id.in_(accounts)))
    return or_(*alternatives) if alternatives else false()


def _field_conditions(s: _Rows, filters: MessageFilter) -> list[ColumnElement[bool]]:
    """`from:`, `to:` and `subject:` and their negations: each value's words as a
    phrase in one name or address (or the subject). A value without words is in no
    message: it finds nothing, and excludes nothing."""
    fields: tuple[tuple[SQLColumnExpression[Any], tuple[str, ...], bool], ...] = (
        (s.from_words, filters.from_, False),
        (s.to_words, filters.to, False),
        (s.subject_words, filters.subject, False),
        (s.from_words, filters.not_from, True),
        (s.to_words, filters.not_to, True),
        (s.subject_words, filters.not_subject, True),
    )
    where: list[ColumnElement[bool]] = []
    for vector, values, negated in fields:
        for value in values:
            phrase = words(value)
            if not phrase:
                if not negated:
                    where.append(false())
                continue
            match = _matches(vector, phrase_query(phrase))
            where.append(~match if negated else match)
    return where


def _date_order(columns: _Rows, *, newest: bool) -> tuple[Any, Any]:
    """ORDER BY received_at, message_id of `columns` (an entity or a subquery's `c`)."""
    received_at, message_id = columns.received_at, columns.message_id
    return (received_at.desc(), message_id.desc()) if newest else (received_at, message_id)


class MessageSearchRepository(TenantRepository):
    """SQL of the PostgreSQL backend: one tenant's documents and index state."""

    async def state_row(self) -> tuple[str, int] | None:
        """The tenant's (state, schema_version), or None when it has no row."""
        row = (
            await self.session.execute(
                self.scoped.select(SearchIndexStateRow.state, SearchIndexStateRow.schema_version)
            )
        ).first()
        return None if row is None else (row.state, row.schema_version)

    async def set_state(self, state: str) -> None:
        """Record `state` for the documents of this `SCHEMA_VERSION`."""
        values = {"state": state, "schema_version": SCHEMA_VERSION, "updated_at": utcnow()}
        statement = self.scoped.insert(SearchIndexStateRow, values)
        await self.session.execute(
            statement.on_conflict_do_update(index_elements=["tenant_id"], set_=values)
        )

    async def clear(self) -> None:
        """Delete every document of the tenant."""
        await self.session.execute(self.scoped.delete(MessageSearch))

    async def upsert(self, rows: Sequence[dict[str, Any]]) -> None:
        """Insert or replace these rows (`search_row`), as one statement."""
        statement = self.scoped.insert_select(_SEARCH, _INCOMING_COLUMNS)
        replaced = {name: statement.excluded[name] for name in _INCOMING_COLUMNS}
        del replaced["message_id"]
        await self.session.execute(
            statement.on_conflict_do_update(
                index_elements=["tenant_id", "message_id"], set_=replaced
            ),
            {"rows": list(rows)},
        )

    async def remove(self, message_ids: Sequence[uuid.UUID]) -> None:
        await self.session.execute(
            self.scoped.delete(MessageSearch).where(
                MessageSearch.message_id == any_(bindparam("removed", type_=_UUIDS))
            ),
            {"removed": list(message_ids)},
        )

    async def page(
        self,
        filters: MessageFilter,
        free: FreeText | None,
        *,
        order: Order,
        after: Position | None,
        limit: int,
    ) -> list[tuple[uuid.UUID, Any]]:
        """(message id, sort key) of up to `limit` matches after `after`, in `order`."""
        if order == "relevance":
            return await self._ranked(filters, free, after=after, limit=limit)
        return await self._by_date(
            filters, free, after=after, limit=limit, newest=order == "newest"
        )

    async def _by_date(
        self,
        filters: MessageFilter,
        free: FreeText | None,
        *,
        after: Position | None,
        limit: int,
        newest: bool,
    ) -> list[tuple[uuid.UUID, Any]]:
        """Matches in received order: walked along the date index while they are dense
        enough, else all fetched through the GIN indexes and sorted.

        PostgreSQL chooses between those two plans by its estimate of the matches, and
        a text-search estimate can be far off: a phrase is estimated as the AND of its
        words (a rare phrase of common words then walked all 100,000 rows of
        bench/search.py's mailbox: 200-400 ms), the words of one address as
        independent words (`from:` a frequent sender: 6,000 rows fetched and sorted).
        So the walk comes first, over `_WALK_ROWS` rows: when they hold a page of
        matches, those are the first matches (their rows are a prefix of the order).
        When they hold some, the density they show says how far a page lies; a second
        walk goes that far if it is within `_MAX_WALK_ROWS`. Otherwise every match is
        fetched; a phrase is then checked on each row holding its words (3-4 us each).
        """
        bound = self._keyset(after, newest=newest)
        rows = await self._walk(filters, free, bound, rows=_WALK_ROWS, limit=limit, newest=newest)
        if rows and len(rows) < limit:
            # Half as far again as the density predicts, so that one more walk
            # usually suffices.
            reach = _WALK_ROWS * limit * 3 // (2 * len(rows))
            if reach <= _MAX_WALK_ROWS:
                rows = await self._walk(
                    filters, free, bound, rows=reach, limit=limit, newest=newest
                )
        if len(rows) < limit:
            # OFFSET 0 keeps the ORDER BY and LIMIT out of the subquery, whose plan then
            # fetches every match: through the GIN indexes unless the matches are many.
            matches = (
                self.scoped.select(MessageSearch.message_id, MessageSearch.received_at)
                .where(*_conditions(MessageSearch, filters, free), *bound)
                .offset(0)
                .subquery("matches")
            )
            everything = (
                select(matches.c.message_id, matches.c.received_at)
                .order_by(*_date_order(matches.c, newest=newest))
                .limit(limit)
            )
            rows = list((await self.session.execute(everything)).all())
        return [(message_id, key) for message_id, key in rows]

    async def _walk(
        self,
        filters: MessageFilter,
        free: FreeText | None,
        bound: list[ColumnElement[bool]],
        *,
        rows: int,
        limit: int,
        newest: bool,
    ) -> list[Any]:
        """Up to `limit` matches among the next `rows` rows in received order."""
        recent = (
            self.scoped.select(MessageSearch)
            .where(*bound)
            .order_by(*_date_order(MessageSearch, newest=newest))
            .limit(rows)
            .subquery("recent")
        )
        # The subquery is scoped; the statement reads nothing else.
        walked = (
            select(recent.c.message_id, recent.c.received_at)
            .where(*_conditions(recent.c, filters, free))
            .order_by(*_date_order(recent.c, newest=newest))
            .limit(limit)
        )
        return list((await self.session.execute(walked)).all())

    @staticmethod
    def _keyset(after: Position | None, *, newest: bool) -> list[ColumnElement[bool]]:
        """Rows strictly after `after` in received order."""
        if after is None:
            return []
        position = tuple_(MessageSearch.received_at, MessageSearch.message_id)
        bound = tuple_(
            literal(after.key, MessageSearch.received_at.type),
            literal(after.id, MessageSearch.message_id.type),
        )
        return [position < bound if newest else position > bound]

    async def _ranked(
        self,
        filters: MessageFilter,
        free: FreeText | None,
        *,
        after: Position | None,
        limit: int,
    ) -> list[tuple[uuid.UUID, Any]]:
        """Matches by relevance (`ts_rank_cd` of the free text), then id, descending."""
        s = MessageSearch
        text_query = free_text_query(free) if free is not None else None
        # ts_rank_cd is a real: the key of a position is one exactly, so a tie of
        # scores compares equal to the position it was read from.
        key: SQLColumnExpression[Any] = (
            func.ts_rank_cd(s.document, _tsquery(text_query), type_=REAL)
            if text_query is not None
            else literal_column("0::real", REAL)
        )
        where = _conditions(s, filters, free)
        if after is not None:
            bound = tuple_(literal(after.key, REAL), literal(after.id, s.message_id.type))
            where.append(tuple_(key, s.message_id) < bound)
        statement = (
            self.scoped.select(s.message_id, key.label("sort_key"))
            .where(*where)
            .order_by(key.desc(), s.message_id.desc())
            .limit(limit)
        )
        rows = (await self.session.execute(statement)).all()
        return [(row.message_id, row.sort_key) for row in rows]


_UUIDS = ARRAY(UUID(as_uuid=True))
# A batch of `search_row`s, unpacked by PostgreSQL from one JSON parameter: the
# statement text is the same for any batch.
_INCOMING = (
    func.jsonb_to_recordset(bindparam("rows", type_=JSONB))
    .table_valued(
        column("message_id", UUID),
        column("account_id", UUID),
        column("mailbox_id", UUID),
        column("thread_id", UUID),
        column("received_at", DateTime(timezone=True)),
        column("seen", Boolean),
        column("flagged", Boolean),
        column("has_attachments", Boolean),
        column("labels", ARRAY(Text)),
        column("document", TSVECTOR),
        column("subject_words", TSVECTOR),
        column("from_words", TSVECTOR),
        column("to_words", TSVECTOR),
    )
    .render_derived(name="incoming", with_types=True)
)
_INCOMING_COLUMNS = {c.name: c for c in _INCOMING.c}
