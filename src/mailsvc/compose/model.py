"""What a composition is made of, and what building it gives: frozen plain data."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime


@dataclass(frozen=True, slots=True)
class Mailbox:
    """One address, with an optional display name."""

    address: str
    name: str | None = None


@dataclass(frozen=True, slots=True)
class AttachmentSpec:
    """A file to attach.

    `content_type` is a bare "type/subtype". A part that is `inline` and has a
    `content_id` is a resource of the HTML body (referenced there as `cid:<id>`) and
    goes into its multipart/related; any other part is an attachment of the
    message, shown inline by clients that can when `inline` is set.
    """

    filename: str
    content_type: str
    content: bytes
    content_id: str | None = None
    inline: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class OriginalMessage:
    """What a reply or a forward needs of the original message (from the mirror).

    The ids may come with or without angle brackets. `raw` is the RFC 5322 source,
    needed to forward the message as an attachment.
    """

    message_id: str | None = None
    references: tuple[str, ...] = ()
    subject: str | None = None
    from_: tuple[Mailbox, ...] = ()
    to: tuple[Mailbox, ...] = ()
    date: datetime | None = None
    text_body: str | None = None
    raw: bytes | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Composition:
    """A message as a user asks for it; `mailsvc.compose.build` turns it into bytes.

    A reply (`reply_to_original`) and a forward (`forward_of`) exclude each other.
    With neither, `quote_original` and `forward_inline` have no effect.
    `headers` are extra header fields, restricted to the names that
    `mailsvc.compose.validate.check_custom_header` allows.
    """

    from_: Mailbox
    to: tuple[Mailbox, ...] = ()
    cc: tuple[Mailbox, ...] = ()
    bcc: tuple[Mailbox, ...] = ()
    reply_to: tuple[Mailbox, ...] = ()
    subject: str | None = None
    text_body: str | None = None
    html_body: str | None = None
    attachments: tuple[AttachmentSpec, ...] = ()
    headers: Mapping[str, str] = field(default_factory=dict)
    reply_to_original: OriginalMessage | None = None
    quote_original: bool = False
    forward_of: OriginalMessage | None = None
    forward_inline: bool = False


@dataclass(frozen=True, slots=True)
class BuiltMessage:
    """The exact message to send, and its envelope.

    `raw` has CRLF line ends, for SMTP DATA and IMAP APPEND as is. `message_id` is
    the Message-ID header's value, with angle brackets. `envelope_to` lists the to,
    cc and bcc addresses once each (compared case-insensitively), in that order.
    `needs_smtputf8` is set when an address has non-ASCII characters: the message
    must then be sent with the SMTPUTF8 extension (RFC 6531); those addresses are
    written in UTF-8 in the header (RFC 6532), all else stays 7-bit.
    """

    raw: bytes
    message_id: str
    envelope_from: str
    envelope_to: tuple[str, ...]
    needs_smtputf8: bool = False
    # As written, after the reply and forward rules (`Re:`, `Fwd:`).
    subject: str | None = None
