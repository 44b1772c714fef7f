"""SQL of the hot message reads on the raw pool (kit/reads.py): list pages, the join
of search hits, one whole message, and the mailbox lookups of a list's filters.

PostgreSQL builds each summary as JSON text and the page goes out as those bytes;
tests/message/test_list_json.py holds them to the `MessageSummary` model and
tests/golden/ to what the routes answered before this path existed. Every statement
filters each tenant table on `tenant_id = $1` (kit/reads.py).

Statements are assembled from fixed fragments, one placeholder per value, so the
set of distinct texts is small (one per combination of filters) and asyncpg's
statement cache keeps them prepared.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from mailsvc.kit.pagination import encode_cursor
from mailsvc.kit.reads import TenantReads
from mailsvc.search.backend import Hit
from mailsvc.search.excerpt import EXCERPT_SOURCE_CHARS
from mailsvc.search.filter import MessageFilter, Position

# One `MessageSummary` (schemas.py) as JSON, without its closing brace so that a list
# adds `"highlight":null` and a search its excerpt. Address columns hold
# `{"name", "address"}` objects already (sync/writer.py), so they pass through.
_SUMMARY_FIELDS = r"""json_build_object(
    'id', m.id, 'account_id', m.account_id, 'mailbox_id', m.mailbox_id,
    'thread_id', m.thread_id, 'subject', m.subject, 'from', m.from_[0], 'to', m."to",
    'cc', m.cc, 'snippet', m.snippet, 'date', m.date, 'received_at', m.internal_date,
    'flags', m.flags, 'unread', NOT (m.flags @> ARRAY['\Seen']),
    'flagged', m.flags @> ARRAY['\Flagged'], 'has_attachments', m.has_attachments,
    'size', m.size"""
_LIST_ITEM = _SUMMARY_FIELDS + ", 'highlight', NULL)::text"
_SEARCH_ITEM = _SUMMARY_FIELDS + ")::text"

_PAGE_ORDER = {
    "newest": ("<", "m.internal_date DESC, m.id DESC"),
    "oldest": (">", "m.internal_date ASC, m.id ASC"),
}


class Statement:
    """A statement's text under construction: `$1` is the tenant, values follow."""

    def __init__(self) -> None:
        self.args: list[object] = []

    def value(self, value: object, sql_type: str) -> str:
        self.args.append(value)
        return f"${len(self.args) + 1}::{sql_type}"


def message_conditions(filters: MessageFilter, statement: Statement) -> list[str]:
    """The WHERE conditions of the plain fields of `filters` on `messages m`.

    The full-text part (`MessageFilter.searches`) is the search backend's; its hits
    are joined back with these conditions (`MessageReads.summaries`).
    """
    where: list[str] = []
    if filters.account_id is not None:
        where.append(f"m.account_id = {statement.value(filters.account_id, 'uuid')}")
    if filters.mailbox_ids is not None:
        # One array parameter: the same text for any number of mailboxes.
        ids = statement.value(list(filters.mailbox_ids), "uuid[]")
        where.append(f"m.mailbox_id = ANY({ids})")
    if filters.thread_id is not None:
        where.append(f"m.thread_id = {statement.value(filters.thread_id, 'uuid')}")
    if filters.unread is not None:
        where.append(("NOT " if filters.unread else "") + r"m.flags @> ARRAY['\Seen']")
    if filters.flagged is not None:
        where.append(("" if filters.flagged else "NOT ") + r"m.flags @> ARRAY['\Flagged']")
    if filters.has_attachments is not None:
        where.append(f"m.has_attachments IS {'true' if filters.has_attachments else 'false'}")
    if filters.received_after is not None:
        bound = statement.value(filters.received_after, "timestamptz")
        where.append(f"m.internal_date >= {bound}")
    if filters.received_before is not None:
        bound = statement.value(filters.received_before, "timestamptz")
        where.append(f"m.internal_date < {bound}")
    return where


def list_statement(
    filters: MessageFilter,
    *,
    order: str,
    after: Position | None,
    limit: int,
    mailbox_role: str | None = None,
) -> tuple[str, tuple[object, ...]]:
    """SQL of a list page (no full-text part) and its arguments after the tenant;
    `mailbox_role` keeps the messages of the mailboxes with that role (`inbox`, ...).

    Rows are (summary JSON text, received time, id), `limit` of them. Keyset order is
    (received time, id), both descending for `newest`, ascending for `oldest`: a
    message that arrives while a client pages sorts before the pages already read and
    is never returned twice or skipped.
    """
    comparison, ordering = _PAGE_ORDER["oldest" if order == "oldest" else "newest"]
    statement = Statement()
    where = ["m.tenant_id = $1", *message_conditions(filters, statement)]
    if mailbox_role is not None:
        role = statement.value(mailbox_role, "text")
        where.append(
            "m.mailbox_id IN (SELECT b.id FROM mailboxes b "
            f"WHERE b.tenant_id = $1 AND b.special_use = {role})"
        )
    if after is not None:
        key = statement.value(after.key, "timestamptz")
        where.append(
            f"(m.internal_date, m.id) {comparison} ({key}, {statement.value(after.id, 'uuid')})"
        )
    sql = (
        f"SELECT {_LIST_ITEM}, m.internal_date, m.id FROM messages m "
        f"WHERE {' AND '.join(where)} ORDER BY {ordering} "
        f"LIMIT {statement.value(limit, 'int')}"
    )
    return sql, tuple(statement.args)


@dataclass(frozen=True, slots=True)
class JsonPage:
    """A page of summaries as a JSON array, and where it ended when more follow."""

    items: str
    last: Position | None

    @property
    def empty(self) -> bool:
        return self.items == "[]"


def json_page(rows: Sequence[asyncpg.Record], *, limit: int) -> JsonPage:
    """The page of `list_statement`'s rows (read with `limit + 1` to see if more follow)."""
    more = len(rows) > limit
    last = rows[limit - 1] if more else None
    return JsonPage(
        items="[" + ",".join(row[0] for row in rows[:limit]) + "]",
        last=None if last is None else Position(key=last[1], id=last[2]),
    )


def page_body(rows: Sequence[asyncpg.Record], *, limit: int, order: str) -> bytes:
    """The `MessagePage` body of `list_statement`'s rows."""
    return body_of(json_page(rows, limit=limit), order=order)


def body_of(page: JsonPage, *, order: str) -> bytes:
    """A `MessagePage` body: the items as PostgreSQL built them, and the cursor."""
    next_cursor = None
    if page.last is not None:
        key = page.last.key
        next_cursor = encode_cursor(
            {
                "o": order,
                "k": key.isoformat() if isinstance(key, datetime) else float(key),
                "i": str(page.last.id),
            }
        )
    return b"".join(
        (
            b'{"items":',
            page.items.encode(),
            b',"next_cursor":',
            json.dumps(next_cursor).encode(),
            b"}",
        )
    )


def with_highlight(summary: str, highlight: str | None) -> str:
    """A search's summary JSON (`MessageReads.summaries`) completed with its
    `highlight`."""
    return f'{summary[:-1]},"highlight":{json.dumps(highlight)}}}'


@dataclass(frozen=True, slots=True)
class SearchSummary:
    """A confirmed search hit: its summary JSON without `highlight`, and the start
    of its text body when highlights were asked for."""

    json: str
    body: str | None


# A whole message: the columns `message_out` (service.py) turns into a `MessageOut`,
# its attachments as one JSON array in id order.
_MESSAGE = """SELECT m.id, m.account_id, m.mailbox_id, m.thread_id, m.subject,
    m.from_::text AS from_, m."to"::text AS "to", m.cc::text AS cc, m.bcc::text AS bcc,
    m.sender::text AS sender, m.reply_to::text AS reply_to, m.snippet, m.date,
    m.internal_date, m.flags, m.has_attachments, m.size, m.message_id_header,
    m.in_reply_to, m."references", m.text_body, m.html_body, m.parse_error,
    (SELECT coalesce(json_agg(json_build_object(
        'id', a.id, 'filename', a.filename, 'content_type', a.content_type,
        'size', a.size, 'content_id', a.content_id, 'is_inline', a.is_inline)
        ORDER BY a.id), '[]')::text
     FROM attachments a WHERE a.tenant_id = $1 AND a.message_id = m.id) AS attachments
FROM messages m WHERE m.tenant_id = $1 AND m.id = $2::uuid"""

_MAILBOX_EXISTS = "SELECT 1 FROM mailboxes b WHERE b.tenant_id = $1 AND b.id = $2::uuid"
_HAS_ANY_MESSAGE = "SELECT 1 FROM messages m WHERE m.tenant_id = $1 LIMIT 1"


class MessageReads(TenantReads):
    """The hot reads of one tenant's messages, on the raw pool."""

    async def page(
        self,
        filters: MessageFilter,
        *,
        limit: int,
        after: Position | None,
        order: str,
        mailbox_role: str | None = None,
    ) -> JsonPage:
        """A list page (no full-text part) after `after`, one row more read than
        `limit` to know whether a next page exists (see `list_statement`)."""
        sql, args = list_statement(
            filters, order=order, after=after, limit=limit + 1, mailbox_role=mailbox_role
        )
        return json_page(await self.fetch(sql, *args), limit=limit)

    async def summaries(
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
        statement = Statement()
        ids = statement.value([hit.message_id for hit in hits], "uuid[]")
        where = ["m.tenant_id = $1", *message_conditions(filters, statement)]
        body = f"left(m.text_body, {EXCERPT_SOURCE_CHARS})" if bodies else "NULL"
        sql = (
            f"SELECT hit.id, {_SEARCH_ITEM}, {body} FROM unnest({ids}) AS hit(id) "
            f"JOIN messages m ON m.id = hit.id WHERE {' AND '.join(where)}"
        )
        rows = await self.fetch(sql, *statement.args)
        return {row[0]: SearchSummary(row[1], row[2]) for row in rows}

    async def message(self, message_id: uuid.UUID) -> asyncpg.Record | None:
        """One message's columns with its attachments (see `_MESSAGE`)."""
        return await self.fetchrow(_MESSAGE, message_id)

    async def mailbox_ids(
        self, *, account_id: uuid.UUID | None, role: str | None, name: str | None
    ) -> tuple[uuid.UUID, ...]:
        """The mailboxes with this role (or name), in one account or all of the tenant's."""
        statement = Statement()
        where = ["b.tenant_id = $1"]
        if account_id is not None:
            where.append(f"b.account_id = {statement.value(account_id, 'uuid')}")
        if role is not None:
            where.append(f"b.special_use = {statement.value(role, 'text')}")
        if name is not None:
            exact = statement.value(name, "text")
            folded = statement.value(name.lower(), "text")
            where.append(f"(b.name = {exact} OR lower(b.name) = {folded})")
        sql = f"SELECT b.id FROM mailboxes b WHERE {' AND '.join(where)}"
        rows = await self.fetch(sql, *statement.args)
        return tuple(row[0] for row in rows)

    async def has_mailbox(self, mailbox_id: uuid.UUID) -> bool:
        return await self.fetchrow(_MAILBOX_EXISTS, mailbox_id) is not None

    async def has_any(self) -> bool:
        """Whether the tenant has any stored message."""
        return await self.fetchrow(_HAS_ANY_MESSAGE) is not None
