"""PostgreSQL's text forms of a tsvector and a tsquery, made of `search.words`. Pure.

A vector is written as `'word':1A,7C ...` and read by PostgreSQL's tsvector input,
never by `to_tsvector`; a query as `'alice' <-> 'acme' & !('draft')`, read by the
tsquery input, never by `to_tsquery`. Every word is quoted, so PostgreSQL's parser
splits nothing again and user text never becomes tsquery syntax.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from mailsvc.search.backend import Address, SearchDocument
from mailsvc.search.words import FreeText, Term, words

SCHEMA_VERSION = 1
"""The format of the documents in `message_search`. A tenant whose state row names
an older one has a missing index (rebuilt); bump it when the words or the vectors
change."""

# Limits of a tsvector: positions above 16383 are stored as 16383, a lexeme keeps its
# first 256 positions, and the lexemes of one vector may take up to 1 MiB.
_MAX_POSITION = 16_383
_MAX_POSITIONS_PER_WORD = 256
_MAX_LEXEME_BYTES = 1_000_000
# A batch of documents goes as one JSON parameter; a huge batch is split at about this.
_BATCH_BYTES = 16_000_000


def _quoted(word: str) -> str:
    # Words are letters, marks and digits only; escaped anyway, as the syntax wants.
    if "'" in word or "\\" in word:
        word = word.replace("\\", "\\\\").replace("'", "''")
    return f"'{word}'"


class VectorText:
    """A tsvector in PostgreSQL's text form, built field by field.

    Each `add` puts its words at consecutive positions, after a gap of one position
    from the previous field, so a phrase never spans two fields.
    """

    def __init__(self) -> None:
        # Word -> its positions, one "3A,9A" string per field it is in.
        self._entries: dict[str, list[str]] = {}
        self._counts: dict[str, int] = {}
        self._next = 1
        self._bytes = 0

    def add(self, field: Sequence[str], weight: str = "") -> None:
        """Add the words of one field, all with `weight` (A-D; "" for the default D)."""
        if not field:
            return
        start = self._next
        self._next = start + len(field) + 1
        # The positions of each word first (the loop that runs once per word of a
        # body), then one entry per distinct word, formatted by C built-ins.
        found: dict[str, list[int]] = {}
        for position, word in enumerate(field, start):
            positions = found.get(word)
            if positions is None:
                found[word] = [position]
            else:
                positions.append(position)
        separator = weight + ","
        for word, positions in found.items():
            count = self._counts.get(word)
            if count is None:
                size = len(word.encode())
                if self._bytes + size > _MAX_LEXEME_BYTES:
                    continue  # the vector is full; a document this big is not mail text
                self._bytes += size
                count = 0
                self._entries[word] = []
            if positions[-1] > _MAX_POSITION:
                positions = sorted({min(position, _MAX_POSITION) for position in positions})
            kept = positions[: _MAX_POSITIONS_PER_WORD - count]
            if kept:
                self._entries[word].append(separator.join(map(str, kept)) + weight)
                self._counts[word] = count + len(kept)

    def text(self) -> str:
        """The vector, e.g. `'alice':1B,9B 'report':3A`."""
        return " ".join(
            [f"{_quoted(word)}:{','.join(entries)}" for word, entries in self._entries.items()]
        )


def _address_fields(addresses: Iterable[Address]) -> Iterator[list[str]]:
    """Each name and each address as a field of its own."""
    for address in addresses:
        yield words(address.name or "")
        yield words(address.address)


def _vector(fields: Iterable[Sequence[str]], weight: str = "") -> str:
    vector = VectorText()
    for field in fields:
        vector.add(field, weight)
    return vector.text()


def search_row(document: SearchDocument) -> dict[str, Any]:
    """The `message_search` row of a document, JSON-ready (ids and dates as strings)."""
    # Each text is split once: the whole document and the per-field vectors share it.
    subject = words(document.subject)
    senders = list(_address_fields(document.from_))
    recipients = list(_address_fields(document.to))
    document_vector = VectorText()
    document_vector.add(subject, "A")
    for field in (*senders, *recipients, *_address_fields(document.reply_to)):
        document_vector.add(field, "B")
    document_vector.add(words(document.body), "C")
    return {
        "message_id": str(document.id),
        "account_id": str(document.account_id),
        "mailbox_id": str(document.mailbox_id),
        "thread_id": None if document.thread_id is None else str(document.thread_id),
        "received_at": document.received_at.isoformat(),
        "seen": document.seen,
        "flagged": document.flagged,
        "has_attachments": document.has_attachments,
        "labels": None if document.labels is None else list(document.labels),
        "document": document_vector.text(),
        "subject_words": _vector([subject]),
        "from_words": _vector(senders),
        "to_words": _vector(recipients),
    }


def batches(rows: Iterable[dict[str, Any]]) -> Iterator[list[dict[str, Any]]]:
    batch: list[dict[str, Any]] = []
    size = 0
    for row in rows:
        batch.append(row)
        size += len(row["document"]) + len(row["subject_words"])
        if size >= _BATCH_BYTES:
            yield batch
            batch, size = [], 0
    if batch:
        yield batch


def phrase_query(phrase: Sequence[str]) -> str:
    """A tsquery of these words next to each other, in order (one word: itself)."""
    return " <-> ".join(_quoted(word) for word in phrase)


def _term_query(term: Term) -> str:
    return ("!" if term.negated else "") + f"({phrase_query(term.words)})"


def free_text_query(free: FreeText) -> str | None:
    """The tsquery of a search's free text; None when it asks for no word."""
    if not free.clauses:
        return None
    return " & ".join(
        "(" + " | ".join(_term_query(term) for term in clause) + ")" for clause in free.clauses
    )
