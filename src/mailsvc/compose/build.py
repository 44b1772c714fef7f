"""Composition -> the exact bytes to send, with the standard library's `email` package.

Structure, from the simplest message up:

    text/plain | text/html | multipart/alternative[text/plain, text/html]
    html with inline resources:  text/html -> multipart/related[text/html, resources...]
    with attachments:            multipart/mixed[body, attachments...]

A message with neither text nor HTML gets an empty text/plain body. Nothing is
derived from HTML: an HTML-only message stays text/html.

Header block. mailsvc writes it itself rather than letting the `email` package
fold every field: the package turns any word too long for a 78-column line into
RFC 2047 encoded words, which would break a long Message-ID in References or a
URL in List-Unsubscribe. So display names, subjects and non-ASCII custom values
are folded by the package (RFC 2047 encoded words, 7-bit clean), while ids and
ASCII custom values are folded only at whitespace, each id on its own line. Bcc
is never written: its addresses are only in the envelope.

SMTPUTF8. email-validator accepts internationalized addresses, and an address
with non-ASCII characters can only travel over SMTPUTF8 (RFC 6531). Rather than
refuse them, a message with any such address (the Bcc ones included, which are
in the envelope) has `needs_smtputf8` set: the sender must then use the SMTPUTF8
extension and fail clearly on a server without it. Only those addresses are
written in UTF-8 (RFC 6532); display names, the subject and everything else stay
RFC 2047 encoded words as in any other message. Internationalized domains with
ASCII local parts count too, since turning them into A-labels needs the IDNA 2008
tables (email-validator's), which stay behind `mailsvc.kit.addresses`.

Bodies are encoded by the package with a 7-bit policy: ASCII text with short
lines stays 7bit, anything else becomes quoted-printable or base64 (whichever is
shorter), so no line exceeds 78 octets and no server needs 8BITMIME. Line ends
become CRLF. The one exception is an attached message (message/rfc822), which is
copied byte for byte, as 8bit if it has 8-bit bytes: re-encoding it would break
its signatures, and RFC 2046 allows no other encoding for it. Its bytes are
spliced in after generation, because the package cannot write 8-bit bytes of a
message it did not parse; the multipart boundaries are random 128-bit tokens,
drawn after the content is fixed, so they cannot occur in it.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass, field
from datetime import datetime
from email import policy
from email.headerregistry import Address
from email.message import MIMEPart
from email.utils import format_datetime

from mailsvc.compose import reply
from mailsvc.compose.model import (
    AttachmentSpec,
    BuiltMessage,
    Composition,
    Mailbox,
    OriginalMessage,
)
from mailsvc.compose.validate import (
    MAX_SUBJECT_CHARS,
    CompositionError,
    check_composition,
    check_header_value,
    check_message_id,
)

__all__ = [
    "AttachmentSpec",
    "BuiltMessage",
    "Composition",
    "CompositionError",
    "Mailbox",
    "OriginalMessage",
    "build_message",
    "new_message_id",
]

_WRITER = policy.SMTP
# Parts are built under a 7-bit policy so that the package picks 7bit, QP or base64.
_PARTS = policy.SMTP.clone(cte_type="7bit")
_FOLD_COLUMNS = 78
_CRLF = "\r\n"
_LINE_ENDS = re.compile(rb"\r\n|\r|\n")
_WORDS = re.compile(r"[ \t]*[^ \t]+")
_DOMAIN = re.compile(r"[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?")
_FALLBACK_DOMAIN = "mailsvc.invalid"


def new_message_id(from_address: str) -> str:
    """A new `<random@domain>` Message-ID, the domain taken from the sender's address.

    Generate it once, before the first attempt to send, and keep it: a retry after
    an ambiguous failure looks for it in the Sent mailbox.
    """
    _, at, domain = from_address.rpartition("@")
    domain = domain.strip().lower() if at else ""
    if not domain.isascii():
        try:
            domain = domain.encode("idna").decode("ascii")
        except UnicodeError:
            domain = ""
    if not _DOMAIN.fullmatch(domain):
        domain = _FALLBACK_DOMAIN
    return f"<{secrets.token_urlsafe(18)}@{domain}>"


def build_message(composition: Composition, *, message_id: str, date: datetime) -> BuiltMessage:
    """The message to send for `composition`, dated `date` (timezone-aware).

    Runs every check of `mailsvc.compose.validate` again, so nothing unchecked is
    built; raises `CompositionError` naming the field.
    """
    checked = check_composition(composition)
    message_id = check_message_id("message_id", message_id)
    if date.tzinfo is None or date.utcoffset() is None:
        raise CompositionError("date", "must be timezone-aware")
    content = _content(checked)
    addresses = [checked.from_, *checked.to, *checked.cc, *checked.bcc, *checked.reply_to]
    needs_smtputf8 = not all(mailbox.address.isascii() for mailbox in addresses)

    lines = [
        *_address_field("From", (checked.from_,)),
        *_address_field("To", checked.to),
        *_address_field("Cc", checked.cc),
        *_address_field("Reply-To", checked.reply_to),
    ]
    if content.subject is not None:
        lines.append(_fold("Subject", content.subject))
    lines += [f"Date: {format_datetime(date)}{_CRLF}", f"Message-ID: {message_id}{_CRLF}"]
    if content.in_reply_to is not None:
        lines.append(f"In-Reply-To: {content.in_reply_to}{_CRLF}")
    if content.references:
        lines.append(f"References: {(_CRLF + ' ').join(content.references)}{_CRLF}")
    for name, value in checked.headers.items():
        lines.append(_fold_words(name, value) if value.isascii() else _fold(name, value))
    lines.append(f"MIME-Version: 1.0{_CRLF}")

    head = "".join(lines).encode("utf-8")
    raw = head + _generate(_body(content), content.spliced)
    return BuiltMessage(
        raw=raw,
        message_id=message_id,
        envelope_from=checked.from_.address,
        envelope_to=_envelope(checked),
        needs_smtputf8=needs_smtputf8,
        subject=content.subject,
    )


@dataclass(slots=True)
class _Content:
    """What goes into the message once reply and forward rules have run."""

    subject: str | None
    text: str | None
    html: str | None
    attachments: list[AttachmentSpec]
    in_reply_to: str | None = None
    references: tuple[str, ...] = ()
    forwarded: OriginalMessage | None = None
    # Placeholder token -> the attached message's bytes, put in after generation.
    spliced: dict[bytes, bytes] = field(default_factory=dict)


def _content(composition: Composition) -> _Content:
    content = _Content(
        subject=composition.subject,
        text=composition.text_body,
        html=composition.html_body,
        attachments=list(composition.attachments),
    )
    original = composition.reply_to_original
    if original is not None:
        content.subject = reply.reply_subject(composition.subject or original.subject)
        content.in_reply_to, content.references = reply.thread_headers(original)
        if composition.quote_original:
            content.html = reply.quote_html(content.html, original)
            if content.text is not None or content.html is None:
                content.text = reply.quote_text(content.text, original)
    forwarded = composition.forward_of
    if forwarded is not None:
        content.subject = reply.forward_subject(composition.subject or forwarded.subject)
        if composition.forward_inline or forwarded.raw is None:
            content.html = reply.forward_html(content.html, forwarded)
            if content.text is not None or content.html is None:
                content.text = reply.forward_text(content.text, forwarded)
        else:
            content.forwarded = forwarded
    if content.subject is not None:
        # Derived subjects come from stored mail; the prefix may add a few characters.
        check_header_value("subject", content.subject, max_chars=MAX_SUBJECT_CHARS + 8)
    return content


def _body(content: _Content) -> MIMEPart:
    resources: list[AttachmentSpec] = []
    files: list[AttachmentSpec] = []
    for item in content.attachments:
        (resources if _is_resource(item, content.html) else files).append(item)
    html = None
    if content.html is not None:
        html = _text_part(content.html, "html")
        if resources:
            html = _multipart(
                "related",
                [html, *(_file_part(item, content.spliced) for item in resources)],
                type="text/html",
            )
    text = _text_part(content.text, "plain") if content.text is not None else None
    if text is not None and html is not None:
        body = _multipart("alternative", [text, html])
    else:
        body = html or text or _text_part("", "plain")
    parts = [_file_part(item, content.spliced) for item in files]
    if content.forwarded is not None and content.forwarded.raw is not None:
        filename = reply.forwarded_filename(content.forwarded)
        parts.append(
            _message_part(content.forwarded.raw, filename, inline=False, spliced=content.spliced)
        )
    return _multipart("mixed", [body, *parts]) if parts else body


def _is_resource(attachment: AttachmentSpec, html: str | None) -> bool:
    return html is not None and attachment.inline and attachment.content_id is not None


def _text_part(text: str, subtype: str) -> MIMEPart:
    part = MIMEPart(policy=_PARTS)
    part.set_content(text, subtype=subtype, charset="utf-8")
    return part


def _file_part(attachment: AttachmentSpec, spliced: dict[bytes, bytes]) -> MIMEPart:
    if attachment.content_type == "message/rfc822":
        return _message_part(
            attachment.content,
            attachment.filename,
            inline=attachment.inline,
            content_id=attachment.content_id,
            spliced=spliced,
        )
    maintype, _, subtype = attachment.content_type.partition("/")
    part = MIMEPart(policy=_PARTS)
    part.set_content(
        attachment.content,
        maintype,
        subtype,
        disposition="inline" if attachment.inline else "attachment",
        filename=attachment.filename,
        cid=_cid(attachment.content_id),
    )
    return part


def _cid(content_id: str | None) -> str | None:
    return f"<{content_id}>" if content_id is not None else None


def _message_part(
    raw: bytes,
    filename: str,
    *,
    inline: bool,
    content_id: str | None = None,
    spliced: dict[bytes, bytes],
) -> MIMEPart:
    """A message/rfc822 part whose content is a placeholder for `raw`."""
    raw = _LINE_ENDS.sub(b"\r\n", raw)
    token = f"mailsvc-attached-message-{secrets.token_hex(16)}".encode("ascii")
    spliced[token] = raw
    part = MIMEPart(policy=_PARTS)
    part.set_content(
        token,
        "message",
        "rfc822",
        cte="7bit" if raw.isascii() else "8bit",
        disposition="inline" if inline else "attachment",
        filename=filename,
        cid=_cid(content_id),
    )
    return part


def _multipart(subtype: str, parts: list[MIMEPart], **params: str) -> MIMEPart:
    container = MIMEPart(policy=_PARTS)
    container["Content-Type"] = f"multipart/{subtype}"
    for name, value in params.items():
        container.set_param(name, value)
    container.set_boundary(f"=_{secrets.token_hex(16)}")
    for part in parts:
        container.attach(part)
    return container


def _generate(root: MIMEPart, spliced: dict[bytes, bytes]) -> bytes:
    generated = root.as_bytes(policy=_WRITER)
    for token, raw in spliced.items():
        generated = generated.replace(token, raw, 1)
    return generated


def _address_field(name: str, mailboxes: tuple[Mailbox, ...]) -> list[str]:
    """`name: mailboxes` folded, display names in RFC 2047 encoded words and
    internationalized addresses in UTF-8; nothing for an empty list."""
    if not mailboxes:
        return []
    # The stdlib folds only ASCII addresses, and in UTF-8 mode it would write long
    # display names raw on one line, past 998 octets. So a non-ASCII address is
    # folded as an ASCII stand-in, replaced afterwards: addresses are never split.
    stand_ins: dict[str, str] = {}
    addresses: list[Address] = []
    for mailbox in mailboxes:
        address = mailbox.address
        if not address.isascii():
            stand_in = f"{secrets.token_hex(8)}@smtputf8.invalid"
            stand_ins[stand_in] = address
            address = stand_in
        local, _, domain = address.rpartition("@")
        addresses.append(Address(display_name=mailbox.name or "", username=local, domain=domain))
    folded = _fold(name, addresses)
    for stand_in, address in stand_ins.items():
        folded = folded.replace(stand_in, address, 1)
    return [folded]


def _fold(name: str, value: str | list[Address]) -> str:
    return str(_WRITER.header_factory(name, value).fold(policy=_WRITER))


def _fold_words(name: str, value: str) -> str:
    """`Name: value` folded only at whitespace, never inside a word (a URL, an id)."""
    # Each piece keeps the whitespace before it, which starts the continuation line.
    first, *rest = _WORDS.findall(f" {value}")
    lines: list[str] = []
    line = f"{name}:{first}"
    for word in rest:
        if len(line) + len(word) > _FOLD_COLUMNS:
            lines.append(line)
            line = word
        else:
            line += word
    lines.append(line)
    return _CRLF.join(lines) + _CRLF


def _envelope(composition: Composition) -> tuple[str, ...]:
    seen: set[str] = set()
    recipients: list[str] = []
    for mailbox in (*composition.to, *composition.cc, *composition.bcc):
        key = mailbox.address.casefold()
        if key not in seen:
            seen.add(key)
            recipients.append(mailbox.address)
    return tuple(recipients)
