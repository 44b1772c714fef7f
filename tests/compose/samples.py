"""Helpers to build messages in tests and to check what goes on the wire."""

from __future__ import annotations

import email
from datetime import UTC, datetime
from email import policy
from email.message import EmailMessage, MIMEPart
from typing import Any

from mailsvc.compose.build import BuiltMessage, build_message
from mailsvc.compose.model import Composition, Mailbox

DATE = datetime(2024, 6, 3, 10, 30, tzinfo=UTC)
MESSAGE_ID = "<fixed-id.1@example.com>"
SENDER = Mailbox("alice@example.com", "Alice Example")
RECIPIENT = Mailbox("bob@example.org", "Bob")


def composition(**fields: Any) -> Composition:
    """A composition from Alice to Bob with a text body, `fields` overriding."""
    values: dict[str, Any] = {
        "from_": SENDER,
        "to": (RECIPIENT,),
        "subject": "Hello",
        "text_body": "Hi Bob.\n",
    }
    values.update(fields)
    return Composition(**values)


def build(**fields: Any) -> BuiltMessage:
    """`composition(**fields)` built with a fixed Message-ID and date."""
    return build_message(composition(**fields), message_id=MESSAGE_ID, date=DATE)


def parse(raw: bytes) -> EmailMessage:
    """The message as a standard-conforming reader sees it."""
    message = email.message_from_bytes(raw, policy=policy.default)
    assert isinstance(message, EmailMessage)
    return message


def header_block(raw: bytes) -> bytes:
    return raw.split(b"\r\n\r\n", 1)[0]


def assert_wire_format(raw: bytes, *, ascii_header: bool = True) -> None:
    """CRLF line ends only, no line above 998 octets (RFC 5322 2.1.1), and unless told
    otherwise (SMTPUTF8) a 7-bit header."""
    assert b"\n" not in raw.replace(b"\r\n", b"")
    assert b"\r" not in raw.replace(b"\r\n", b"")
    assert raw.endswith(b"\r\n")
    assert max(len(line) for line in raw.split(b"\r\n")) <= 998
    assert header_block(raw).isascii() or not ascii_header


def structure(message: MIMEPart) -> list[str]:
    """Content types of the MIME tree, depth-first, indented by nesting level."""
    found: list[str] = []

    def walk(part: MIMEPart, depth: int) -> None:
        found.append("  " * depth + part.get_content_type())
        if part.is_multipart():
            for child in part.iter_parts():
                walk(child, depth + 1)

    walk(message, 0)
    return found


def text_content(part: MIMEPart) -> str:
    """A text part's decoded content, line ends as `\\n`."""
    content = part.get_content()
    assert isinstance(content, str)
    return content.replace("\r\n", "\n")
