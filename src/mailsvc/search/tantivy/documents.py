"""`SearchDocument` -> Tantivy document (the fields of schema.py)."""

from __future__ import annotations

from collections.abc import Iterator

import tantivy

from mailsvc.search.backend import Address, SearchDocument
from mailsvc.search.tantivy import schema

_U64 = (1 << 64) - 1


def tantivy_document(document: SearchDocument) -> tantivy.Document:
    """The index document of one message; it replaces any other of the same id."""
    doc = tantivy.Document()
    doc.add_text(schema.ID, str(document.id))
    doc.add_unsigned(schema.ID_HIGH, document.id.int >> 64)
    doc.add_unsigned(schema.ID_LOW, document.id.int & _U64)
    doc.add_text(schema.ACCOUNT, str(document.account_id))
    doc.add_text(schema.MAILBOX, str(document.mailbox_id))
    if document.thread_id is not None:
        doc.add_text(schema.THREAD, str(document.thread_id))
    doc.add_integer(schema.RECEIVED, schema.micros(document.received_at))
    doc.add_unsigned(schema.ORDER_KEY, schema.order_key(document.received_at, document.id))
    doc.add_boolean(schema.SEEN, document.seen)
    doc.add_boolean(schema.FLAGGED, document.flagged)
    doc.add_boolean(schema.HAS_ATTACHMENTS, document.has_attachments)
    for label in document.labels or ():
        doc.add_text(schema.LABEL, label)

    subject = schema.joined_words(document.subject)
    _add(doc, schema.SUBJECT, subject)
    _add(doc, schema.TEXT, subject)
    # One value per name and per address: a `from:` phrase must hold within one.
    for value in _names_and_addresses(document.from_):
        _add(doc, schema.FROM, value)
        _add(doc, schema.TEXT, value)
    for value in _names_and_addresses(document.to):
        _add(doc, schema.TO, value)
        _add(doc, schema.TEXT, value)
    for value in _names_and_addresses(document.reply_to):
        _add(doc, schema.TEXT, value)
    _add(doc, schema.TEXT, schema.joined_words(document.body))
    return doc


def _names_and_addresses(addresses: tuple[Address, ...]) -> Iterator[str]:
    for address in addresses:
        for part in (address.name, address.address):
            if part:
                yield schema.joined_words(part)


def _add(doc: tantivy.Document, field: str, words: str) -> None:
    if words:
        doc.add_text(field, words)
