"""SQL of full-text search: each message's search document, and the conditions that query it.

A message row is written with `search_vector` NULL and gets its document in a later,
separate transaction (`SearchIndexRepository.index`). Computing `to_tsvector` is
about half of PostgreSQL's work per stored message; kept out of the store
transaction, it runs on a second connection while the next batch is stored, and the
store stage, which a sync waits on, does only the rest. NULL means "not indexed
yet", so rows a crash left without a document are found through a partial index and
filled by the next pass (`pending`).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import (
    Table,
    and_,
    any_,
    bindparam,
    exists,
    func,
    literal,
    literal_column,
    or_,
    select,
)
from sqlalchemy.dialects.postgresql import ARRAY, UUID
from sqlalchemy.sql.expression import ColumnElement

from mailsvc.kit.repository import TenantRepository
from mailsvc.models import Message
from mailsvc.models.message import SEARCH_CONFIG

# to_tsvector refuses documents past 1 MB; the body part of the search document is
# capped well below that so one huge message can never fail an indexing pass.
SEARCH_BODY_CHARS = 100_000

_MESSAGES: Table = Message.__table__  # type: ignore[assignment]
# A constant, never user input.
_CONFIG: ColumnElement[Any] = literal_column(f"'{SEARCH_CONFIG}'::regconfig")


def _weighted(text: ColumnElement[Any], weight: str) -> ColumnElement[Any]:
    vector = func.to_tsvector(_CONFIG, func.coalesce(text, ""))
    return func.setweight(vector, literal_column(f"'{weight}'"))


def _names_and_addresses() -> ColumnElement[Any]:
    """Every display name and address of From, To, Cc, Bcc and Reply-To, as one text."""
    m = _MESSAGES.c
    entries = (
        func.jsonb_array_elements(
            m.from_.op("||")(m.to).op("||")(m.cc).op("||")(m.bcc).op("||")(m.reply_to)
        )
        .table_valued("value")
        .render_derived(name="entry")
    )
    entry = entries.c.value
    joined = func.string_agg(
        func.concat_ws(" ", entry.op("->>")("name"), entry.op("->>")("address")), literal(" ")
    )
    return select(joined).select_from(entries).scalar_subquery()


def _with_cjk_bigrams(text: Any) -> ColumnElement[Any]:
    """`text` plus the character bigrams of its Chinese, Japanese and Korean runs.

    Those scripts have no spaces, so PostgreSQL's parser makes a whole run one token
    and a word inside it could never match. `mailsvc_cjk_bigrams` (migration 0004)
    emits the overlapping bigrams, and `search.query.cjk_bigrams` turns a query
    term into the same bigrams as a phrase, so the two meet.
    """
    # Constants inline, not bound: the subject form must equal the expression of
    # ix_messages_subject_search for the planner to use that index.
    value = func.coalesce(text, literal_column("''"))
    return value.op("||")(literal_column("' '")).op("||")(func.mailsvc_cjk_bigrams(value))


def subject_document() -> ColumnElement[Any]:
    """The subject's own search vector; indexed as ix_messages_subject_search."""
    return func.to_tsvector(_CONFIG, _with_cjk_bigrams(Message.subject))


# Subject weighs A, names and addresses B, the (capped) text body C.
_DOCUMENT = (
    _weighted(_with_cjk_bigrams(_MESSAGES.c.subject), "A")
    .op("||")(_weighted(_names_and_addresses(), "B"))
    .op("||")(
        _weighted(_with_cjk_bigrams(func.left(_MESSAGES.c.text_body, SEARCH_BODY_CHARS)), "C")
    )
)
_UNINDEXED = (
    _MESSAGES.c.id == any_(bindparam("message_ids", type_=ARRAY(UUID(as_uuid=True)))),
    # Idempotent: a repair pass and the sync's own indexing may meet.
    _MESSAGES.c.search_vector.is_(None),
)


class SearchIndexRepository(TenantRepository):
    async def index(self, message_ids: Sequence[uuid.UUID]) -> int:
        """Compute the search documents of these messages (those still without one)."""
        if not message_ids:
            return 0
        statement = (
            self.scoped.update(_MESSAGES)
            .where(*_UNINDEXED)
            # Filling the index is not a change of the message: `updated_at` stays.
            .values(search_vector=_DOCUMENT, updated_at=_MESSAGES.c.updated_at)
        )
        result = await self.session.execute(statement, {"message_ids": list(message_ids)})
        return int(result.rowcount)  # type: ignore[attr-defined]

    async def pending(self, account_id: uuid.UUID, *, limit: int) -> list[uuid.UUID]:
        """Messages of the account still without a search document (oldest first)."""
        result = await self.session.scalars(
            self.scoped.select(Message.id)
            .where(
                Message.account_id == account_id,
                Message.search_vector.is_(None),
            )
            .order_by(Message.id)
            .limit(limit)
        )
        return list(result.all())


# Markers ts_headline puts around matches: private-use characters, removed from the
# text first, so the caller can HTML-escape the excerpt and then mark it up.
HIGHLIGHT_START = "\ue000"
HIGHLIGHT_STOP = "\ue001"
# ts_headline re-parses the text it is given, for every row of the page: it was most
# of a typical search's time at 5,000 characters (bench/search.py). Matches further
# into the body still count; they just get no excerpt.
_HEADLINE_CHARS = 2_000
_HEADLINE_OPTIONS = (
    f'StartSel="{HIGHLIGHT_START}", StopSel="{HIGHLIGHT_STOP}", '
    'MaxWords=30, MinWords=10, MaxFragments=2, FragmentDelimiter=" … "'
)


def _query(text: str) -> ColumnElement[Any]:
    # websearch_to_tsquery never raises on user input: it has no syntax errors.
    return func.websearch_to_tsquery(_CONFIG, text)


def matches_text(text: str) -> ColumnElement[bool]:
    """Words, "phrases", OR and -exclusions (websearch syntax) anywhere in the document."""
    return Message.search_vector.bool_op("@@")(_query(text))


def rank(text: str) -> ColumnElement[float]:
    """Relevance of a message to `text` (cover density: near matches weigh more)."""
    return func.ts_rank_cd(Message.search_vector, _query(text))


def headline(text: str) -> ColumnElement[str]:
    """Excerpts of the body around the matches, the matches between the markers."""
    body = func.left(Message.text_body, _HEADLINE_CHARS)
    clean = func.translate(body, HIGHLIGHT_START + HIGHLIGHT_STOP, "")
    return func.ts_headline(_CONFIG, clean, _query(text), _HEADLINE_OPTIONS)


def subject_matches(term: str) -> ColumnElement[bool]:
    """`term` (websearch syntax) in the subject, through its own GIN index."""
    return subject_document().bool_op("@@")(_query(term))


_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")


def _word_start_regex(value: str) -> str:
    # Every non-alphanumeric character escaped: the value is matched literally.
    escaped = "".join(c if c.isalnum() else "\\" + c for c in value)
    return ("\\m" if value[:1].isalnum() else "") + escaped


def address_matches(columns: Sequence[Any], value: str) -> ColumnElement[bool]:
    """A name or address in these JSONB address lists with a word starting with `value`.

    `alice`, `alice@example.com`, `example.com` and `Smith` all find
    "Alice Smith <alice@example.com>"; `lice` does not (as in Gmail).
    """
    combined = columns[0]
    for column in columns[1:]:
        combined = combined.op("||")(column)
    entries = func.jsonb_array_elements(combined).table_valued("value").render_derived(name="e")
    pattern = _word_start_regex(value)
    named = exists(
        select(literal(1))
        .select_from(entries)
        .where(
            or_(
                entries.c.value.op("->>")("name").bool_op("~*")(pattern),
                entries.c.value.op("->>")("address").bool_op("~*")(pattern),
            )
        )
    )
    if not _EMAIL.fullmatch(value):
        return named
    # A whole address is one token of the search document (its names-and-addresses
    # part), so the GIN index finds the candidates and the JSON test confirms them,
    # instead of reading every message of the tenant.
    return and_(Message.search_vector.bool_op("@@")(func.plainto_tsquery(_CONFIG, value)), named)
