"""The last step shared by both parsing paths: fields + walked body -> `ParsedMessage`.

`parse_message` (whole messages) and `parse_partial` (header, BODYSTRUCTURE and
text parts of messages above the size cap) both end here, so the rules for what
is body, what is an attachment and how fields are read live in one place.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

from mailsvc.mime import headers as hdr
from mailsvc.mime.model import Address, MimePart, ParsedAttachment, ParsedMessage
from mailsvc.mime.text import html_to_text, make_snippet

MAX_REFERENCES = 100


@dataclass(frozen=True, slots=True)
class PendingAttachment:
    """An attachment before the HTML body is known (which decides `is_inline`)."""

    filename: str | None
    content_type: str
    size: int
    content_id: str | None
    disposition: str | None
    related: bool
    section: str
    encoding: str | None


def is_body_text(
    content_type: str,
    disposition: str | None,
    filename: str | None,
    *,
    related: bool,
    top: bool,
) -> bool:
    """Whether a leaf part is part of the message's text rather than an attachment.

    Text/plain and text/html only, never a resource of multipart/related. An explicit
    disposition decides; without one, a file name makes it an attachment unless it
    is the message's only part.
    """
    return (
        not related
        and content_type in ("text/plain", "text/html")
        and disposition != "attachment"
        and (disposition == "inline" or filename is None or top)
    )


def _references(values: list[str]) -> list[str]:
    """Message ids of References, deduplicated in order, at most `MAX_REFERENCES`.

    When cut, the first id (the thread's root) and the last ones (the nearest
    ancestors) are kept: those are the ones threading needs (RFC 5322 3.6.4).
    """
    seen: set[str] = set()
    ids: list[str] = []
    for value in values:
        for item in hdr.message_ids(value):
            if item not in seen:
                seen.add(item)
                ids.append(item)
    if len(ids) > MAX_REFERENCES:
        ids = [ids[0], *ids[-(MAX_REFERENCES - 1) :]]
    return ids


def _cut(text: str | None, limit: int, notes: list[str], what: str) -> str | None:
    if text is None or len(text) <= limit:
        return text
    notes.append(f"{what} cut at {limit} characters")
    return text[:limit]


def finish_attachments(
    pending: list[PendingAttachment], html_body: str | None
) -> list[ParsedAttachment]:
    """Final attachments: names cleaned, `is_inline` set from the disposition or, for
    resources of multipart/related, from a `cid:` reference in the HTML body."""
    html_lower = html_body.lower() if html_body and "cid:" in html_body.lower() else ""
    result: list[ParsedAttachment] = []
    for item in pending:
        cid = item.content_id
        referenced = bool(cid and html_lower and f"cid:{cid.lower()}" in html_lower)
        filename = hdr.clean(item.filename) if item.filename else None
        result.append(
            ParsedAttachment(
                filename=filename or None,
                content_type=item.content_type,
                size=item.size,
                content_id=cid,
                is_inline=item.disposition == "inline" or (item.related and referenced),
                section=item.section,
                # "7bit" is what no Content-Transfer-Encoding means, and all that
                # BODYSTRUCTURE can say about it: one spelling, so both paths agree.
                encoding=None if item.encoding == "7bit" else item.encoding,
            )
        )
    return result


def has_real_attachments(attachments: list[ParsedAttachment]) -> bool:
    """Whether a user would see a paperclip: any attachment but cid-embedded resources."""
    return any(not (item.is_inline and item.content_id) for item in attachments)


def assemble(
    fields: hdr.Fields,
    *,
    texts: list[str],
    htmls: list[str],
    attachments: list[PendingAttachment],
    parts: list[MimePart],
    notes: list[str],
    max_text_chars: int,
    charset_hint: str | None,
) -> ParsedMessage:
    """Build the `ParsedMessage` from the top-level fields and the walked body.

    Shared by `parse_message` and the BODYSTRUCTURE path, so both apply the same
    rules; each step is guarded so a failure loses only its own fields.
    """
    envelope = _Envelope()
    try:
        envelope.read(fields, notes, charset_hint)
    except Exception as exc:
        notes.append(f"header fields unreadable ({type(exc).__name__}); partial result")

    text_body: str | None = None
    html_body: str | None = None
    snippet = ""
    final: list[ParsedAttachment] = []
    try:
        if htmls:
            html_body = _cut("\n".join(htmls), max_text_chars, notes, "HTML body")
        text_body = "\n".join(texts) if texts else None
        if (text_body is None or not text_body.strip()) and html_body:
            text_body = html_to_text(html_body)
        text_body = _cut(text_body, max_text_chars, notes, "text body")
        snippet = make_snippet(text_body) if text_body else ""
        final = finish_attachments(attachments, html_body)
    except Exception as exc:
        notes.append(f"body unreadable ({type(exc).__name__}); partial result")

    return ParsedMessage(
        message_id=envelope.message_id,
        in_reply_to=envelope.in_reply_to,
        references=envelope.references,
        subject=envelope.subject,
        from_=envelope.addresses.get("from", []),
        sender=envelope.addresses.get("sender", []),
        to=envelope.addresses.get("to", []),
        cc=envelope.addresses.get("cc", []),
        bcc=envelope.addresses.get("bcc", []),
        reply_to=envelope.addresses.get("reply-to", []),
        date=envelope.date,
        text_body=text_body,
        html_body=html_body,
        snippet=snippet,
        attachments=final,
        has_attachments=has_real_attachments(final),
        parts=parts,
        # Notes quote header values, which may hold control characters.
        parse_errors=[hdr.clean(note) for note in notes],
    )


@dataclass(slots=True)
class _Envelope:
    """The message-level header fields, read one by one so a bad one loses only itself."""

    message_id: str | None = None
    in_reply_to: str | None = None
    references: list[str] = field(default_factory=list)
    subject: str | None = None
    addresses: dict[str, list[Address]] = field(default_factory=dict)
    date: datetime | None = None

    def read(self, fields: hdr.Fields, notes: list[str], charset_hint: str | None) -> None:
        message_id = hdr.first(fields, "message-id")
        if message_id is not None:
            ids = hdr.message_ids(message_id)
            self.message_id = ids[0] if ids else None
        in_reply_to = hdr.first(fields, "in-reply-to")
        if in_reply_to is not None:
            ids = hdr.message_ids(in_reply_to)
            self.in_reply_to = ids[0] if ids else None
        self.references = _references(hdr.every(fields, "references"))
        subject = hdr.first(fields, "subject")
        if subject is not None:
            self.subject = hdr.text_value(subject, notes, "subject", charset_hint)
        for name in ("from", "sender", "to", "cc", "bcc", "reply-to"):
            values = hdr.every(fields, name)
            if name in ("from", "sender"):
                values = values[:1]
            self.addresses[name] = hdr.addresses(values, notes, name, charset_hint)
        date = hdr.first(fields, "date")
        if date is not None:
            self.date = hdr.parse_date(date, datetime.now(UTC))
            if self.date is None:
                notes.append(f"date: unusable date {date.strip()[:60]!r}")
