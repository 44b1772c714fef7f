"""Raw RFC 5322 bytes -> `ParsedMessage`, fast and without ever raising.

Design
------
The sync engine parses every message of a mailbox, so parsing sets the sync speed
(DESIGN.md, "Test peers"). The stdlib's feed parser, even with `compat32`, pushes
every line of every part through Python code, base64 attachments included, which
caps it below the target on a realistic corpus (bench/parse.py measures it). This
module therefore walks the MIME tree itself, on the raw bytes, with `bytes.find`
for boundaries (`mailsvc.mime.parts`): attachment bodies are never touched line by
line, and their decoded size comes from counting. Only the parts kept as text are
decoded. Header fields, parameters, addresses and dates go through
`mailsvc.mime.headers`, which reuses the stdlib's address and date parsers.

Parts are numbered as IMAP numbers them (RFC 3501 6.4.5) so that an attachment's
`section` can be fetched with `BODY.PEEK[section]`: the parts of a multipart are
`1`, `2`...; a non-multipart message's only part is `1`; the parts inside an
attached message/rfc822 `3` are `3.1`, `3.2`... (its single body is `3.1`).

What counts as the body: text/plain and text/html parts of the message itself
(not of attached messages) that are not attachments (see
`mailsvc.mime.assemble.is_body_text`). In multipart/alternative the last non-blank
alternative of each kind wins; in other multiparts the texts are concatenated.

Limits keep hostile input cheap: nesting deeper than `MAX_DEPTH` and parts beyond
`MAX_PARTS` are not descended into, header blocks are searched within
`MAX_HEADER_BYTES`, decoded text is cut at `max_text_chars`; each is noted in
`parse_errors`. Every step is wrapped, so one broken piece loses that piece only.

Delivery status notifications (a top-level multipart/report with `report-type=
delivery-status` or `global-delivery-status`) also keep their first
`MAX_DELIVERY_REPORT_BYTES` in `delivery_report`: the raw source is gone after
parsing, and the outbox reads bounces from it. Every other message pays one
comparison of its content type.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from mailsvc.mime import headers as hdr
from mailsvc.mime.assemble import PendingAttachment, assemble, is_body_text
from mailsvc.mime.model import MimePart, ParsedMessage
from mailsvc.mime.parts import (
    IDENTITY_ENCODINGS,
    MAX_PARTS,
    PartHead,
    body_text,
    decoded_size,
    head_from_fields,
    header_fields,
    part_head,
    split_multipart,
)

MAX_DEPTH = 30
MAX_DELIVERY_REPORT_BYTES = 500_000
"""As much of a report as `mailsvc.mime.dsn.parse_dsn` reads."""

_NESTED_MESSAGES = frozenset({"message/rfc822", "message/global"})
_DELIVERY_REPORT_TYPES = frozenset({"delivery-status", "global-delivery-status"})


@dataclass(slots=True)
class _Walk:
    """State of one message's walk; collects text, html, attachments and part numbers."""

    raw: bytes
    max_text_chars: int
    notes: list[str] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)
    htmls: list[str] = field(default_factory=list)
    attachments: list[PendingAttachment] = field(default_factory=list)
    parts: list[MimePart] = field(default_factory=list)
    part_count: int = 0
    text_charset: str | None = None
    limit_noted: bool = False

    def message(self, head: PartHead, end: int, prefix: str, depth: int, *, active: bool) -> None:
        """Walk a whole message (the top level, or an attached one numbered `prefix`)."""
        single = f"{prefix}.1" if prefix else "1"
        if head.content_type.startswith("multipart/"):
            self.multipart(head, end, prefix, single, depth, active=active)
        else:
            self.leaf(head, end, single, depth, active=active)

    def part(
        self,
        start: int,
        end: int,
        section: str,
        depth: int,
        *,
        active: bool,
        default_type: str,
        related: bool = False,
    ) -> None:
        """Walk one part of a multipart, numbered `section`; a failure loses this part only."""
        try:
            head = part_head(self.raw, start, end, self.notes, f"part {section}", default_type)
            if head.content_type.startswith("multipart/"):
                self.multipart(head, end, section, section, depth, active=active)
            else:
                self.leaf(head, end, section, depth, active=active, related=related)
        except Exception as exc:  # one bad part must not lose the whole message
            self.notes.append(f"part {section}: unreadable ({type(exc).__name__}), skipped")

    def multipart(
        self, head: PartHead, end: int, prefix: str, own: str, depth: int, *, active: bool
    ) -> None:
        """Walk a multipart whose parts are numbered `prefix`.N; `own` is its own number
        (what it is numbered as when it has to be read as one text part)."""
        where = f"part {prefix}" if prefix else "message"
        boundary = head.params.get("boundary", "")
        if not boundary:
            self.notes.append(f"{where}: multipart without boundary, read as text")
            self.leaf(_as_text(head), end, own, depth, active=active)
            return
        if depth >= MAX_DEPTH:
            self.notes.append(f"{where}: nested deeper than {MAX_DEPTH} levels, not descended")
            return
        spans, closed, capped = split_multipart(
            self.raw, head.body_start, end, boundary.encode("latin-1", errors="replace")
        )
        if not spans:
            self.notes.append(f"{where}: boundary {boundary[:70]!r} not found, read as text")
            self.leaf(_as_text(head), end, own, depth, active=active)
            return
        if capped:
            self._note_part_limit()
        elif not closed:
            self.notes.append(f"{where}: closing boundary missing (truncated multipart)")
        subtype = head.content_type.partition("/")[2]
        default_type = "message/rfc822" if subtype == "digest" else "text/plain"
        root = -1
        if subtype == "related":
            root = _related_root(self.raw, spans, head.params.get("start"))
        for index, (start, stop) in enumerate(spans):
            if self.part_count >= MAX_PARTS:
                self._note_part_limit()
                return
            self.part_count += 1
            section = f"{prefix}.{index + 1}" if prefix else str(index + 1)
            if subtype == "alternative" and active:
                text_mark, html_mark = len(self.texts), len(self.htmls)
                self.part(start, stop, section, depth + 1, active=True, default_type=default_type)
                _keep_last_alternative(self.texts, text_mark)
                _keep_last_alternative(self.htmls, html_mark)
            else:
                self.part(
                    start,
                    stop,
                    section,
                    depth + 1,
                    active=active,
                    default_type=default_type,
                    related=subtype == "related" and index != root,
                )

    def _note_part_limit(self) -> None:
        if not self.limit_noted:
            self.notes.append(f"more than {MAX_PARTS} parts, the rest not read")
            self.limit_noted = True

    def leaf(
        self,
        head: PartHead,
        end: int,
        section: str,
        depth: int,
        *,
        active: bool,
        related: bool = False,
    ) -> None:
        """Number a non-multipart part; keep it as text or attachment when `active`."""
        content_type = head.content_type
        self.parts.append(MimePart(section=section, content_type=content_type))
        nested = content_type in _NESTED_MESSAGES and head.encoding in IDENTITY_ENCODINGS
        if active:
            if is_body_text(
                content_type, head.disposition, head.filename, related=related, top=depth == 0
            ):
                self.keep_text(head, end, section)
            else:
                size = decoded_size(self.raw, head, end, self.notes, section)
                self.attachments.append(
                    PendingAttachment(
                        filename=head.filename,
                        content_type=content_type,
                        size=size,
                        content_id=head.content_id,
                        disposition=head.disposition,
                        related=related,
                        section=section,
                        encoding=head.encoding,
                    )
                )
        if nested:
            if depth >= MAX_DEPTH:
                self.notes.append(f"part {section}: nested deeper than {MAX_DEPTH} levels")
                return
            inner = part_head(
                self.raw, head.body_start, end, self.notes, f"part {section}", "text/plain"
            )
            # The insides of an attached message are numbered, never shown as ours.
            self.message(inner, end, section, depth + 1, active=False)

    def keep_text(self, head: PartHead, end: int, section: str) -> None:
        """Decode a body text part and add it to the text or HTML body."""
        where = f"part {section}"
        # Bound the work on a giant text part: a character takes at most 4 bytes in any
        # charset, base64 adds a third, so this many raw bytes always suffice.
        limit = head.body_start + self.max_text_chars * 6 + 1024
        if end > limit:
            newline = self.raw.rfind(b"\n", head.body_start, limit)
            end = newline + 1 if newline > head.body_start else limit
        charset = head.params.get("charset")
        text = body_text(self.raw[head.body_start : end], head.encoding, charset, self.notes, where)
        if self.text_charset is None and charset:
            self.text_charset = charset
        (self.htmls if head.content_type == "text/html" else self.texts).append(text)


def _keep_last_alternative(found: list[str], mark: int) -> None:
    """Of the texts an alternative added after `mark`, keep only the last non-blank."""
    added = found[mark:]
    if len(added) <= 1:
        return
    del found[mark:]
    best = next((text for text in reversed(added) if text.strip()), added[-1])
    found.append(best)


def _related_root(raw: bytes, spans: list[tuple[int, int]], start_param: str | None) -> int:
    """Index of the root part of a multipart/related (RFC 2387): `start`, else the first."""
    if start_param:
        wanted = start_param.strip().strip("<>")
        for index, (start, end) in enumerate(spans):
            head = part_head(raw, start, end, [], "", "text/plain")
            if head.content_id == wanted:
                return index
    return 0


def _is_delivery_report(head: PartHead) -> bool:
    """Whether a message's top-level head is that of an RFC 3464 report."""
    if head.content_type != "multipart/report":
        return False
    return head.params.get("report-type", "").strip().lower() in _DELIVERY_REPORT_TYPES


def _as_text(head: PartHead) -> PartHead:
    charset = head.params.get("charset", "")
    return head._replace(content_type="text/plain", params={"charset": charset})


def parse_message(raw: bytes, *, max_text_chars: int = 1_000_000) -> ParsedMessage:
    """Parse a raw RFC 5322 message into the fields the mirror stores. Never raises.

    Headers: RFC 2047 words and raw 8-bit bytes decoded (UTF-8, else the body's
    charset), addresses parsed with groups flattened, message ids without brackets,
    `date` in UTC (None when missing, unparseable, before 1970 or over a year ahead).
    Bodies: see the module docstring; `text_body` falls back to text converted from
    the HTML body; both are cut at `max_text_chars`. Anything that could not be read
    cleanly is described in `parse_errors`; what could be read is still returned.
    """
    notes: list[str] = []
    walk = _Walk(raw=b"", max_text_chars=max_text_chars, notes=notes)
    fields: hdr.Fields = []
    delivery_report: bytes | None = None
    try:
        walk.raw = bytes(raw)
        if not walk.raw:
            notes.append("empty message")
        else:
            fields, body_start = header_fields(walk.raw, 0, len(walk.raw), notes, "header")
            if not fields:
                notes.append("message has no header fields")
            head = head_from_fields(fields, body_start, notes, "header", "text/plain")
            if _is_delivery_report(head):
                delivery_report = walk.raw[:MAX_DELIVERY_REPORT_BYTES]
            walk.message(head, len(walk.raw), "", 0, active=True)
    except Exception as exc:  # one bad message must not stop a mailbox
        notes.append(f"MIME structure unreadable ({type(exc).__name__}); partial result")
    parsed = assemble(
        fields,
        texts=walk.texts,
        htmls=walk.htmls,
        attachments=walk.attachments,
        parts=walk.parts,
        notes=notes,
        max_text_chars=max_text_chars,
        charset_hint=walk.text_charset,
    )
    if delivery_report is None:
        return parsed
    return replace(parsed, delivery_report=delivery_report)
