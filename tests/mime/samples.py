"""Helpers to load the .eml corpus and to write small messages inline."""

from __future__ import annotations

import re
from pathlib import Path

from mailsvc.mime import ParsedMessage

CORPUS = Path(__file__).parent / "corpus"
CPYTHON = CORPUS / "cpython"


def eml(name: str) -> bytes:
    """A hand-made message of tests/mime/corpus."""
    return (CORPUS / name).read_bytes()


def message(*lines: str, body: str = "Body.\n") -> bytes:
    """A message from header lines and a body, with CRLF line ends as IMAP serves them."""
    text = "\n".join(lines) + "\n\n" + body
    return text.replace("\n", "\r\n").encode("utf-8")


SECTION = re.compile(r"^[1-9][0-9]*(\.[1-9][0-9]*)*$")


def assert_storable(parsed: ParsedMessage) -> None:
    """What the sync stores must go into PostgreSQL text/JSON columns as is."""
    strings: list[str | None] = [
        parsed.message_id,
        parsed.in_reply_to,
        parsed.subject,
        parsed.text_body,
        parsed.html_body,
        parsed.snippet,
        *parsed.references,
        *parsed.parse_errors,
    ]
    for addresses in (
        parsed.from_,
        parsed.sender,
        parsed.to,
        parsed.cc,
        parsed.bcc,
        parsed.reply_to,
    ):
        strings += [item for address in addresses for item in (address.name, address.address)]
    for attachment in parsed.attachments:
        strings += [attachment.filename, attachment.content_id, attachment.content_type]
        assert attachment.size >= 0
        assert SECTION.match(attachment.section), attachment.section
    for part in parsed.parts:
        assert SECTION.match(part.section), part.section
    for value in strings:
        if value is not None:
            assert "\x00" not in value
            value.encode("utf-8")  # no lone surrogates
    assert len(parsed.snippet) <= 200
