"""The last resort: a `ParsedMessage` from the header block alone, in bounded time.

When the full parse of a message is cut off (it ran past the sync's parse time limit)
or its parser process died, the message is still stored, from what this module reads:
Message-ID, In-Reply-To, References, Subject, Date and the address fields. It must
finish quickly whatever the input, because it runs where no limit protects it (the
syncing process), so it reads only the first `MAX_HEADER_BYTES` of the message and
only with linear steps: header fields are split with `str.find`, and addresses are
taken apart with a plain comma split instead of the address parsers the full parse
uses (a regular expression or the stdlib's parser can be made slow by a crafted
header, which is one way to get here).
"""

from __future__ import annotations

from datetime import UTC, datetime

from mailsvc.mime import headers as hdr
from mailsvc.mime.assemble import MAX_REFERENCES
from mailsvc.mime.model import Address, ParsedMessage

MAX_HEADER_BYTES = 64 * 1024
_MAX_VALUE_CHARS = 4_000
_MAX_ADDRESSES = 100


def parse_header_only(raw: bytes, *, note: str) -> ParsedMessage:
    """Read the header of `raw` (the whole message or its header block) cheaply.

    `note` says why only the header was read; it comes first in `parse_errors`, ahead
    of what reading the header found. Never raises.
    """
    notes: list[str] = []
    try:
        return _read(raw[:MAX_HEADER_BYTES], note, notes)
    except Exception as exc:  # the caller has nothing left to fall back on
        return ParsedMessage(parse_errors=[note, f"header unreadable ({type(exc).__name__})"])


def _read(head: bytes, note: str, notes: list[str]) -> ParsedMessage:
    fields, _ = hdr.split_fields(head.decode("latin-1"), notes, "header")

    def first(name: str) -> str | None:
        value = hdr.first(fields, name)
        return None if value is None else value[:_MAX_VALUE_CHARS]

    def first_id(name: str) -> str | None:
        value = first(name)
        ids = hdr.message_ids(value) if value is not None else []
        return ids[0] if ids else None

    references: list[str] = []
    for value in hdr.every(fields, "references"):
        for item in hdr.message_ids(value[:_MAX_VALUE_CHARS]):
            if item not in references and len(references) < MAX_REFERENCES:
                references.append(item)
    subject = first("subject")
    date = first("date")
    addresses = {
        name: _addresses(hdr.every(fields, name)[: 1 if name in ("from", "sender") else 10], notes)
        for name in ("from", "sender", "to", "cc", "bcc", "reply-to")
    }
    return ParsedMessage(
        message_id=first_id("message-id"),
        in_reply_to=first_id("in-reply-to"),
        references=references,
        subject=hdr.text_value(subject, notes, "subject") if subject is not None else None,
        from_=addresses["from"],
        sender=addresses["sender"],
        to=addresses["to"],
        cc=addresses["cc"],
        bcc=addresses["bcc"],
        reply_to=addresses["reply-to"],
        date=hdr.parse_date(date[:200], datetime.now(UTC)) if date is not None else None,
        parse_errors=[note, *(hdr.clean(item) for item in notes)],
    )


def _addresses(values: list[str], notes: list[str]) -> list[Address]:
    """Mailboxes of address fields, read as `Name <address>` or bare `address` items.

    Groups, comments and quoted commas are not understood: good enough for a message
    whose header could not be parsed properly, and linear in the input.
    """
    found: list[Address] = []
    for value in values:
        for item in value[:_MAX_VALUE_CHARS].split(","):
            if len(found) >= _MAX_ADDRESSES:
                return found
            opening = item.rfind("<")
            closing = item.find(">", opening + 1)
            if opening >= 0 and closing > opening:
                address = item[opening + 1 : closing]
                name = item[:opening].strip().strip('"').strip()
            else:
                address = next((word for word in item.split() if "@" in word), "")
                name = ""
            address = hdr.text_value(address, notes, "address")
            if "@" not in address:
                continue
            display = hdr.text_value(name, notes, "address") if name else ""
            found.append(Address(name=display or None, address=address))
    return found
