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
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from mailsvc.imap import gmail
from mailsvc.kit.pagination import encode_cursor
from mailsvc.kit.reads import TenantReads
from mailsvc.search.backend import Hit
from mailsvc.search.excerpt import EXCERPT_SOURCE_CHARS
from mailsvc.search.filter import LabelFolder, MessageFilter, Position, labels_by_accounts

# One `MessageSummary` (schemas.py) as JSON, without its closing brace so that a list
# adds `"highlight":null` and a search its excerpt. Address columns hold
# `{"name", "address"}` objects already (sync/writer.py), so they pass through.
_SUMMARY_FIELDS = r"""json_build_object(
    'id', m.id, 'account_id', m.account_id, 'mailbox_id', m.mailbox_id,
    'thread_id', m.thread_id, 'subject', m.subject, 'from', m.from_[0], 'to', m."to",
    'cc', m.cc, 'snippet', m.snippet, 'date', m.date, 'received_at', m.internal_date,
    'flags', m.flags, 'labels', m.labels, 'unread', NOT (m.flags @> ARRAY['\Seen']),
    'flagged', m.flags @> ARRAY['\Flagged'], 'has_attachments', m.has_attachments,
    'size', m.size"""
_LIST_ITEM = _SUMMARY_FIELDS + ", 'highlight', NULL)::text"
# The columns `_SUMMARY_FIELDS` reads, for a statement that builds the JSON of rows it
# selected in a subquery (aliased `m` there too).
_SUMMARY_COLUMNS = (
    'm.id, m.account_id, m.mailbox_id, m.thread_id, m.subject, m.from_, m."to", m.cc, '
    "m.snippet, m.date, m.internal_date, m.flags, m.labels, m.has_attachments, m.size"
)
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
        where.append(_mailbox_condition(filters, statement))
    if filters.labels:
        # One array parameter: every label must be carried (Gmail rows only).
        where.append(f"m.labels @> {statement.value(list(filters.labels), 'text[]')}")
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


def _mailbox_condition(filters: MessageFilter, statement: Statement) -> str:
    """The chosen mailboxes: their ids, or (Gmail) their labels on their accounts.

    Without label folders this is the one condition every other server's list has,
    which the mailbox listing index answers. Each label folder adds the rows of its
    account that carry its label (ix_messages_labels), one condition per label.
    """
    assert filters.mailbox_ids is not None
    alternatives = []
    if filters.mailbox_ids or not filters.label_folders:
        # One array parameter: the same text for any number of mailboxes.
        ids = statement.value(list(filters.mailbox_ids), "uuid[]")
        alternatives.append(f"m.mailbox_id = ANY({ids})")
    for label, accounts in labels_by_accounts(filters.label_folders).items():
        carried = statement.value([label], "text[]")
        owners = statement.value(accounts, "uuid[]")
        alternatives.append(f"(m.labels @> {carried} AND m.account_id = ANY({owners}))")
    if len(alternatives) == 1:
        return alternatives[0]
    return "(" + " OR ".join(alternatives) + ")"


def list_statement(
    filters: MessageFilter,
    *,
    order: str,
    after: Position | None,
    limit: int,
    mailbox_role: str | None = None,
    gmail_labels: bool = False,
) -> tuple[str, tuple[object, ...]]:
    """SQL of a list page (no full-text part) and its arguments after the tenant;
    `mailbox_role` keeps the messages of the mailboxes with that role (`inbox`, ...).

    Rows are (summary JSON text, received time, id), `limit` of them. Keyset order is
    (received time, id), both descending for `newest`, ascending for `oldest`: a
    message that arrives while a client pages sorts before the pages already read and
    is never returned twice or skipped.

    A role that is a label on Gmail (`gmail.ROLE_LABELS`: `inbox` is `\\Inbox`) has
    no rows in a Gmail account's folder of that role: its messages are the All Mail
    rows carrying the label. The statement of such a role lists the mailboxes' own
    rows and, when a Gmail label folder has the role, ends with one row of NULLs
    (`GMAIL_LABELS_LEFT_OUT`); the caller then asks again with `gmail_labels`, for a
    page of both (`_gmail_role_statement`). Other servers pay a probe of the partial
    index `ix_mailboxes_gmail_labels`, which holds none of their mailboxes.
    """
    comparison, ordering = _PAGE_ORDER["oldest" if order == "oldest" else "newest"]
    statement = Statement()
    conditions = message_conditions(filters, statement)
    if after is not None:
        key = statement.value(after.key, "timestamptz")
        conditions.append(
            f"(m.internal_date, m.id) {comparison} ({key}, {statement.value(after.id, 'uuid')})"
        )
    labelled_role = mailbox_role in gmail.ROLE_LABELS
    plain = list(conditions)
    if mailbox_role is not None:
        role = statement.value(mailbox_role, "text")
        conditions.append(
            "m.mailbox_id IN (SELECT b.id FROM mailboxes b "
            f"WHERE b.tenant_id = $1 AND b.special_use = {role})"
        )
    if labelled_role:
        assert mailbox_role is not None
        own_account = _account_condition(filters, statement)
        # Skipped at once (a one-time filter) when every mailbox of the role is a Gmail
        # label folder, which holds no rows: the scan would walk the tenant's (or the
        # account's) whole listing index looking for them.
        conditions.append(
            "EXISTS (SELECT 1 FROM mailboxes s WHERE s.tenant_id = $1 AND "
            f"s.special_use = {role} AND s.gmail_label IS NULL{own_account('s')})"
        )
        if gmail_labels:
            return _gmail_role_statement(
                statement,
                stored=conditions,
                plain=plain,
                label=gmail.ROLE_LABELS[mailbox_role],
                role=role,
                own_account=own_account("b"),
                ordering=ordering,
                limit=limit,
            )
    where = ["m.tenant_id = $1", *conditions]
    sql = (
        f"SELECT {_LIST_ITEM}, m.internal_date, m.id FROM messages m "
        f"WHERE {' AND '.join(where)} ORDER BY {ordering} "
        f"LIMIT {statement.value(limit, 'int')}"
    )
    if labelled_role:
        sql = (
            f"({sql}) UNION ALL (SELECT NULL, NULL, NULL WHERE EXISTS (SELECT 1 FROM "
            f"mailboxes g WHERE g.tenant_id = $1 AND g.special_use = {role} AND "
            f"g.gmail_label IS NOT NULL{own_account('g')}))"
        )
    return sql, tuple(statement.args)


GMAIL_LABELS_LEFT_OUT = (None, None, None)
"""The last row of a role's list statement when Gmail label folders have the role."""


def _account_condition(filters: MessageFilter, statement: Statement) -> Callable[[str], str]:
    """` AND <alias>.account_id = $n` for the filter's account (once bound), or ""."""
    if filters.account_id is None:
        return lambda alias: ""
    account = statement.value(filters.account_id, "uuid")
    return lambda alias: f" AND {alias}.account_id = {account}"


def _gmail_role_statement(
    statement: Statement,
    *,
    stored: list[str],
    plain: list[str],
    label: str,
    role: str,
    own_account: str,
    ordering: str,
    limit: int,
) -> tuple[str, tuple[object, ...]]:
    """A role's page when Gmail label folders have the role: two parts, each its own
    ordered scan cut at the page size, merged.

    - the mailboxes' own rows (the conditions `stored`), as `list_statement` finds
      them;
    - for each Gmail account whose folder of the role (the parameter `role`) is a
      label folder, its rows matching `plain` and carrying the label. The
      label is a parameter, not read from the folder, so the planner weighs it by
      the column's statistics: a label as common as `\\Inbox` is found walking the
      account's listing index, a rare one through `ix_messages_labels`.

    The parts return the columns of a summary; its JSON is built once, for the page.
    """
    carried = statement.value([label], "text[]")
    labelled = ["m.tenant_id = $1", *plain, "m.account_id = b.account_id", f"m.labels @> {carried}"]
    rows = statement.value(limit, "int")
    sql = (
        f"SELECT {_LIST_ITEM}, m.internal_date, m.id FROM ("
        f"(SELECT {_SUMMARY_COLUMNS} FROM messages m "
        f"WHERE {' AND '.join(['m.tenant_id = $1', *stored])} "
        f"ORDER BY {ordering} LIMIT {rows}) "
        "UNION ALL "
        "(SELECT g.* FROM mailboxes b CROSS JOIN LATERAL "
        f"(SELECT {_SUMMARY_COLUMNS} FROM messages m "
        f"WHERE {' AND '.join(labelled)} ORDER BY {ordering} LIMIT {rows}) AS g "
        f"WHERE b.tenant_id = $1 AND b.special_use = {role} AND b.gmail_label IS NOT NULL"
        f"{own_account})"
        f") AS m ORDER BY {ordering} LIMIT {rows}"
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
class MailboxChoice:
    """Mailboxes a list asks for: those that hold their messages, and Gmail label
    folders, whose messages are their account's rows carrying their label."""

    ids: tuple[uuid.UUID, ...]
    label_folders: tuple[LabelFolder, ...]

    def places(self) -> set[uuid.UUID | LabelFolder]:
        return {*self.ids, *self.label_folders}


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
    m.in_reply_to, m."references", m.text_body, m.html_body, m.parse_error, m.labels,
    m.gm_message_id, m.gm_thread_id,
    (SELECT coalesce(json_agg(json_build_object(
        'id', a.id, 'filename', a.filename, 'content_type', a.content_type,
        'size', a.size, 'content_id', a.content_id, 'is_inline', a.is_inline)
        ORDER BY a.id), '[]')::text
     FROM attachments a WHERE a.tenant_id = $1 AND a.message_id = m.id) AS attachments
FROM messages m WHERE m.tenant_id = $1 AND m.id = $2::uuid"""

_MAILBOX = (
    "SELECT b.account_id, b.gmail_label FROM mailboxes b WHERE b.tenant_id = $1 AND b.id = $2::uuid"
)
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
        rows = await self.fetch(sql, *args)
        if mailbox_role is not None and any(tuple(row) == GMAIL_LABELS_LEFT_OUT for row in rows):
            # Gmail label folders have the role: the page of both (see `list_statement`).
            sql, args = list_statement(
                filters,
                order=order,
                after=after,
                limit=limit + 1,
                mailbox_role=mailbox_role,
                gmail_labels=True,
            )
            rows = await self.fetch(sql, *args)
        return json_page(rows, limit=limit)

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

    async def mailboxes(
        self, *, account_id: uuid.UUID | None, role: str | None, name: str | None
    ) -> MailboxChoice:
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
        sql = (
            f"SELECT b.id, b.account_id, b.gmail_label FROM mailboxes b WHERE {' AND '.join(where)}"
        )
        rows = await self.fetch(sql, *statement.args)
        return MailboxChoice(
            ids=tuple(row[0] for row in rows if row[2] is None),
            label_folders=tuple(LabelFolder(row[1], row[2]) for row in rows if row[2] is not None),
        )

    async def mailbox(self, mailbox_id: uuid.UUID) -> MailboxChoice | None:
        """One mailbox as a choice of a list (None: not the tenant's)."""
        row = await self.fetchrow(_MAILBOX, mailbox_id)
        if row is None:
            return None
        if row["gmail_label"] is None:
            return MailboxChoice(ids=(mailbox_id,), label_folders=())
        return MailboxChoice(ids=(), label_folders=(LabelFolder(row[0], row[1]),))

    async def has_any(self) -> bool:
        """Whether the tenant has any stored message."""
        return await self.fetchrow(_HAS_ANY_MESSAGE) is not None
