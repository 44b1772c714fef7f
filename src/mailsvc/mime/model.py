"""Plain-data results of parsing: frozen, slotted dataclasses that pickle cheaply.

The sync engine parses in a process pool, so everything here crosses a process
boundary: only builtins, `datetime` and these classes, never an open object.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime


@dataclass(frozen=True, slots=True)
class Address:
    """One mailbox of an address header; `name` is the decoded display name, if any."""

    name: str | None
    address: str


@dataclass(frozen=True, slots=True)
class ParsedAttachment:
    """An attachment or inline resource, located by its IMAP body section.

    `size` is the size of the decoded content in bytes (an estimate within a few bytes
    for base64, see `mailsvc.mime.parse`; when it comes from BODYSTRUCTURE alone it is
    estimated from the encoded size). `section` is the RFC 3501 part number that
    `BODY.PEEK[<section>]` fetches; `encoding` (the Content-Transfer-Encoding, lower
    case) tells how to decode what it returns; None means 7bit, i.e. nothing to undo.
    """

    filename: str | None
    content_type: str
    size: int
    content_id: str | None
    is_inline: bool
    section: str
    encoding: str | None


@dataclass(frozen=True, slots=True)
class MimePart:
    """One numbered part of the MIME tree: every part except multipart containers.

    Lists the whole tree in section order, including the body parts and the insides
    of attached messages, so the sections can be checked against BODYSTRUCTURE.
    """

    section: str
    content_type: str


@dataclass(frozen=True, slots=True)
class ParsedMessage:
    """What the mirror stores about one message; see `parse_message` for the rules."""

    message_id: str | None = None
    in_reply_to: str | None = None
    references: list[str] = field(default_factory=list)
    subject: str | None = None
    from_: list[Address] = field(default_factory=list)
    sender: list[Address] = field(default_factory=list)
    to: list[Address] = field(default_factory=list)
    cc: list[Address] = field(default_factory=list)
    bcc: list[Address] = field(default_factory=list)
    reply_to: list[Address] = field(default_factory=list)
    date: datetime | None = None
    text_body: str | None = None
    html_body: str | None = None
    snippet: str = ""
    attachments: list[ParsedAttachment] = field(default_factory=list)
    has_attachments: bool = False
    parts: list[MimePart] = field(default_factory=list)
    parse_errors: list[str] = field(default_factory=list)
    # A delivery status notification's first bytes (RFC 3464; the bound is
    # `mailsvc.mime.parse.MAX_DELIVERY_REPORT_BYTES`), None for other messages. Raw
    # sources are not kept past parsing, so the report travels here for
    # `mailsvc.mime.dsn` to read. `parse_partial` (above the size cap) never sets it.
    delivery_report: bytes | None = None
