"""The Tantivy index of one tenant: its fields, its analyzer, and its sort key.

Words. Every word that is indexed or searched for comes from `search.words` (the one
splitter both backends share: lower-cased, split at anything that is not a letter or
digit, CJK runs as overlapping bigrams). A text value is handed to Tantivy already
split, as its words joined by single spaces, and the field's analyzer
(`WORDS_ANALYZER`) only splits at those spaces, so Tantivy's terms and positions are
exactly those words in order. Each name, each address and the body are separate
values of their field: Tantivy leaves a position gap between values, so a phrase
never runs from one address into the next.

Fields (nothing is stored: the API reads everything, the body's first characters for
the highlights included, from PostgreSQL when it joins the hits):

    id            the message id as text, raw: replaced and deleted by this term
    id_high/low   the id's 128 bits as two u64 fast fields: read for every hit
    account, mailbox, thread   raw terms: the plain filters
    label         Gmail's labels, each a raw term (`label:`, `?label=`)
    received      INTERNALDATE in microseconds since the epoch, i64 fast: the date filters
    order_key     u64 fast, the page order of `newest` and `oldest` (`order_key`)
    seen, flagged, has_attachments   indexed booleans
    subject       the subject's words (`subject:`)
    from, to      each name and address of From / To, Cc, Bcc (`from:`, `to:`)
    text          the whole document: subject, every name and address (Reply-To too),
                  the body; free text is searched here and ranked by BM25

`SCHEMA_VERSION` is written beside each index (store.py); any change to the fields,
their analysis or `order_key` must increase it, which makes every existing index
MISSING and rebuilt from PostgreSQL.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Final

import tantivy

from mailsvc.search.words import words

# 2: the body's first characters are no longer stored (highlights come from PostgreSQL).
# 3: Gmail's labels (`label`).
SCHEMA_VERSION: Final = 3

WORDS_ANALYZER: Final = "mailsvc_words"

ID: Final = "id"
ID_HIGH: Final = "id_high"
ID_LOW: Final = "id_low"
ACCOUNT: Final = "account"
MAILBOX: Final = "mailbox"
THREAD: Final = "thread"
LABEL: Final = "label"
RECEIVED: Final = "received"
ORDER_KEY: Final = "order_key"
SEEN: Final = "seen"
FLAGGED: Final = "flagged"
HAS_ATTACHMENTS: Final = "has_attachments"
SUBJECT: Final = "subject"
FROM: Final = "from"
TO: Final = "to"
TEXT: Final = "text"

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)

MAX_ORDER_KEY: Final = (1 << 64) - 1
"""The largest `order_key` (u64), that of every time after 4077; 0 is that of every
time before 1900."""

# order_key: 36 bits of seconds since 1900 (until the year 4077), 20 bits of
# microseconds, then the top 8 bits of the id. See `order_key`.
_SINCE_1900 = 2_208_988_800
_SECONDS_BITS = 36
_MICROSECOND_BITS = 20
_ID_BITS = 8


def build_schema() -> tantivy.Schema:
    """The schema of every tenant index (see the module docstring)."""
    builder = tantivy.SchemaBuilder()
    for name in (ID, ACCOUNT, MAILBOX, THREAD, LABEL):
        builder.add_text_field(name, tokenizer_name="raw", index_option="basic")
    builder.add_unsigned_field(ID_HIGH, fast=True)
    builder.add_unsigned_field(ID_LOW, fast=True)
    builder.add_integer_field(RECEIVED, fast=True)
    builder.add_unsigned_field(ORDER_KEY, fast=True)
    for name in (SEEN, FLAGGED, HAS_ATTACHMENTS):
        builder.add_boolean_field(name, indexed=True)
    for name in (SUBJECT, FROM, TO, TEXT):
        builder.add_text_field(name, tokenizer_name=WORDS_ANALYZER, index_option="position")
    return builder.build()


SCHEMA: Final = build_schema()


def register_analyzer(index: tantivy.Index) -> None:
    """Give an opened index the analyzer its text fields name (Tantivy does not
    persist custom analyzers: every `Index` object needs it before use)."""
    index.register_tokenizer(
        WORDS_ANALYZER, tantivy.TextAnalyzerBuilder(tantivy.Tokenizer.whitespace()).build()
    )


def joined_words(text: str) -> str:
    """`text` as Tantivy indexes it: its `search.words`, joined by single spaces."""
    return " ".join(words(text))


_UTC_MISSING = "received times must be timezone-aware"


def micros(moment: datetime) -> int:
    """Microseconds since the Unix epoch (exact; negative before 1970)."""
    # A tzinfo that gives no offset is as naive as none (Python would raise TypeError).
    if moment.utcoffset() is None:
        raise ValueError(_UTC_MISSING)
    return (moment - _EPOCH) // _MICROSECOND


def from_micros(value: int) -> datetime:
    """The UTC time of `micros`."""
    return _EPOCH + timedelta(microseconds=value)


def order_key(received_at: datetime, message_id: uuid.UUID) -> int:
    """The u64 that `newest` and `oldest` sort by: never decreasing in (received_at, id).

    Tantivy sorts by one fast field, and a page must be exact even where many
    messages share a second. The key is the received time to the microsecond, then
    the id's top 8 bits: a larger key always means a later (received_at, id), and
    equal keys (the same microsecond and id prefix, or a time outside 1900-4077,
    which collapses to the lowest or highest key) are ordered by the full id in
    Python (backend.py reads every hit's key group completely).
    """
    seconds, microseconds = divmod(micros(received_at), 1_000_000)
    seconds += _SINCE_1900
    if seconds < 0:
        return 0
    if seconds >= 1 << _SECONDS_BITS:
        return MAX_ORDER_KEY
    key = (seconds << _MICROSECOND_BITS | microseconds) << _ID_BITS
    return key | message_id.int >> (128 - _ID_BITS)
