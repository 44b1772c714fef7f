"""IMAP BODYSTRUCTURE -> a `BodyPart` tree, and messages built from it.

Messages above the sync's size cap are not fetched whole: the engine fetches the
header, the BODYSTRUCTURE and only the text parts that `text_sections` picks, and
`parse_partial` turns those into the same `ParsedMessage` that `parse_message`
would have produced (the body rules and the section numbers are shared with
`mailsvc.mime.parse`), except that attachment sizes are estimated from their
encoded sizes.

The response is read in two steps: a tokenizer turns the RFC 3501 s-expression
(lists, atoms, NIL, numbers, quoted strings and `{n}` literals) into nested
lists, then `_read_body` interprets them per the `body` grammar (RFC 3501 9,
RFC 9051 9), tolerating missing or mistyped fields. Nothing here raises: an
unreadable response gives `None`, a malformed field its default.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field

from mailsvc.mime import headers as hdr
from mailsvc.mime.assemble import (
    PendingAttachment,
    assemble,
    finish_attachments,
    is_body_text,
)
from mailsvc.mime.model import MimePart, ParsedAttachment, ParsedMessage
from mailsvc.mime.parse import MAX_DEPTH
from mailsvc.mime.parts import (
    MAX_PARTS,
    body_text,
    header_fields,
    media_type,
    transfer_encoding,
)

Sexpr = list[object]
"""A parsed list: items are str (atoms and strings), int, None (NIL) or Sexpr."""

_TOKEN = re.compile(
    rb'[ \t\r\n]*(?:(\()|(\))|"((?:[^"\\]|\\.)*)"|\{(\d{1,12})\+?\}\r?\n|([^ \t\r\n()"{]+))',
    re.DOTALL,
)
_ESCAPE = re.compile(rb"\\(.)", re.DOTALL)
_NESTED_MESSAGES = frozenset({"message/rfc822", "message/global"})


class _Atom(str):
    """An unquoted atom, told apart from a quoted string with the same text."""

    __slots__ = ()


@dataclass(frozen=True, slots=True)
class BodyPart:
    """One node of a BODYSTRUCTURE.

    `section` is the RFC 3501 part number ("1", "2.1"...). A multipart that is a
    message's body has no number of its own: its `section` is that message's
    ("" for the top level). `size` is the encoded size in octets, as the server
    reports it. For message/rfc822, `message` is the attached message's body
    (its envelope is skipped). Parameter names are lower-cased; values decoded
    (RFC 2231, RFC 2047).
    """

    section: str
    content_type: str
    params: dict[str, str] = field(default_factory=dict)
    content_id: str | None = None
    description: str | None = None
    encoding: str | None = None
    size: int = 0
    lines: int | None = None
    disposition: str | None = None
    disposition_params: dict[str, str] = field(default_factory=dict)
    children: list[BodyPart] = field(default_factory=list)
    message: BodyPart | None = None
    # Parts inside this one were left out: nested deeper than `MAX_DEPTH` levels,
    # or beyond `MAX_PARTS` parts.
    truncated: bool = False

    @property
    def is_multipart(self) -> bool:
        return self.content_type.startswith("multipart/")

    @property
    def filename(self) -> str | None:
        """The file name from the disposition's `filename`, else the type's `name`."""
        return self.disposition_params.get("filename") or self.params.get("name") or None


def parse_bodystructure(response: bytes | str) -> BodyPart | None:
    """Read a BODYSTRUCTURE: the parenthesized body, or a whole FETCH response
    containing `BODYSTRUCTURE (...)`. Literals may be inlined or `{n}` literals.
    Returns None when nothing usable is found; never raises."""
    try:
        data = response.encode("utf-8", errors="replace") if isinstance(response, str) else response
        tree = _tokenize(bytes(data))
        body = _find_body(tree)
        if body is None:
            return None
        return _read_body(body, "", 0, [0], message_body=True)
    except Exception:  # an unreadable structure is "no structure"
        return None


def _tokenize(data: bytes) -> Sexpr:
    """Nested lists of the s-expression; atoms are str, NIL is None, numbers int.

    Strings stay Latin-1 stand-ins of their bytes, like header values in
    `mailsvc.mime.headers`, so raw UTF-8 in them is decoded by the same rules.
    """
    root: Sexpr = []
    stack: list[Sexpr] = [root]
    position = 0
    length = len(data)
    while position < length:
        match = _TOKEN.match(data, position)
        if match is None:
            position += 1  # a stray character: skip it
            continue
        position = match.end()
        opening, closing, quoted, literal, atom = match.groups()
        if opening:
            child: Sexpr = []
            stack[-1].append(child)
            stack.append(child)
        elif closing:
            if len(stack) > 1:
                stack.pop()
        elif quoted is not None:
            stack[-1].append(_ESCAPE.sub(rb"\1", quoted).decode("latin-1"))
        elif literal is not None:
            size = int(literal)
            stack[-1].append(data[position : position + size].decode("latin-1"))
            position += size
        elif atom is not None:
            text = atom.decode("latin-1")
            if text.upper() == "NIL":
                stack[-1].append(None)
            elif text.isdigit():
                stack[-1].append(int(text[:18]))
            else:
                stack[-1].append(_Atom(text))
    return root


def _find_body(tree: Sexpr) -> Sexpr | None:
    """The list after a BODYSTRUCTURE (or BODY) atom, else the first top-level list."""
    pending: list[Sexpr] = [tree]
    while pending:
        items = pending.pop()
        for index, item in enumerate(items[:-1]):
            following = items[index + 1]
            if (
                isinstance(item, _Atom)
                and item.upper() in ("BODYSTRUCTURE", "BODY")
                and isinstance(following, list)
            ):
                return following
        pending.extend(item for item in items if isinstance(item, list))
    for item in tree:
        if isinstance(item, list):
            return item
    return None


def _read_body(
    items: Sexpr, section: str, depth: int, count: list[int], *, message_body: bool
) -> BodyPart:
    """Interpret one `body`; `message_body` when it is a whole message's body, whose
    parts are numbered under `section` (and a single part is `section`.1)."""
    if items and isinstance(items[0], list):
        return _read_multipart(items, section, depth, count)
    own = (f"{section}.1" if section else "1") if message_body else section
    notes: list[str] = []
    content_type = media_type(f"{_string(items, 0)}/{_string(items, 1)}".lower())
    if content_type is None:
        content_type = "application/octet-stream"
    media = content_type.partition("/")[0]
    index = 7
    lines: int | None = None
    nested: BodyPart | None = None
    truncated = False
    if content_type in _NESTED_MESSAGES and len(items) > 9 and isinstance(items[8], list):
        # envelope at 7 (skipped), body at 8, lines at 9
        if depth < MAX_DEPTH:
            nested = _read_body(items[8], own, depth + 1, count, message_body=True)
        truncated = nested is None
        lines = _number(items, 9)
        index = 10
    elif media == "text":
        lines = _number(items, 7)
        index = 8
    disposition, disposition_params = _disposition(items, index + 1, notes, own)
    raw_id = _string(items, 3)
    content_id = hdr.clean(raw_id).strip("<>") if raw_id else ""
    return BodyPart(
        section=own,
        content_type=content_type,
        params=_params(items, 2, notes, own),
        content_id=content_id or None,
        description=_text(items, 4, notes, own),
        encoding=transfer_encoding(_string(items, 5) or ""),
        size=_number(items, 6) or 0,
        lines=lines,
        disposition=disposition,
        disposition_params=disposition_params,
        message=nested,
        truncated=truncated,
    )


def _read_multipart(items: Sexpr, section: str, depth: int, count: list[int]) -> BodyPart:
    # body-type-mpart = 1*body SP media-subtype [SP body-ext-mpart]
    first = next((i for i, item in enumerate(items) if not isinstance(item, list)), len(items))
    bodies: list[Sexpr] = [item for item in items[:first] if isinstance(item, list)]
    rest = items[first:]
    notes: list[str] = []
    content_type = media_type(f"multipart/{_string(rest, 0) or 'mixed'}".lower())
    children: list[BodyPart] = []
    if depth < MAX_DEPTH:
        for number, child in enumerate(bodies, start=1):
            if count[0] >= MAX_PARTS:
                break
            count[0] += 1
            child_section = f"{section}.{number}" if section else str(number)
            children.append(_read_body(child, child_section, depth + 1, count, message_body=False))
    disposition, disposition_params = _disposition(rest, 2, notes, section)
    return BodyPart(
        section=section,
        content_type=content_type or "multipart/mixed",
        params=_params(rest, 1, notes, section),
        disposition=disposition,
        disposition_params=disposition_params,
        children=children,
        truncated=len(children) < len(bodies),
    )


def _string(items: Sexpr, index: int) -> str | None:
    value = items[index] if index < len(items) else None
    # str() also turns an _Atom into a plain str, so none leaks into a BodyPart.
    return str(value) if isinstance(value, str | int) else None


def _number(items: Sexpr, index: int) -> int | None:
    value = items[index] if index < len(items) else None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip()[:18])
    return None


def _text(items: Sexpr, index: int, notes: list[str], where: str) -> str | None:
    value = _string(items, index)
    if not value:
        return None
    return hdr.text_value(value, notes, where) or None


def _params(items: Sexpr, index: int, notes: list[str], where: str) -> dict[str, str]:
    value = items[index] if index < len(items) else None
    if not isinstance(value, list):
        return {}
    strings = [str(item) if isinstance(item, str | int) else "" for item in value]
    pairs = list(zip(strings[::2], strings[1::2], strict=False))
    return hdr.combine_parameters(pairs, notes, where)


def _disposition(
    items: Sexpr, index: int, notes: list[str], where: str
) -> tuple[str | None, dict[str, str]]:
    value = items[index] if index < len(items) else None
    if not isinstance(value, list) or not value:
        return None, {}
    kind = _string(value, 0)
    return (kind.lower() if kind else None), _params(value, 1, notes, where)


def iter_parts(structure: BodyPart) -> Iterator[BodyPart]:
    """Every node in section order, attached messages' insides included."""
    pending = [structure]
    while pending:
        part = pending.pop()
        yield part
        inner = [part.message] if part.message is not None else part.children
        pending.extend(reversed(inner))


def _numbered_parts(structure: BodyPart) -> list[MimePart]:
    """The `MimePart`s `parse_message` lists: every node but multipart containers."""
    return [
        MimePart(section=part.section, content_type=part.content_type)
        for part in iter_parts(structure)
        if not part.is_multipart
    ]


@dataclass(slots=True)
class _Classified:
    texts: list[BodyPart] = field(default_factory=list)
    attachments: list[tuple[BodyPart, bool]] = field(default_factory=list)


def _classify(structure: BodyPart) -> _Classified:
    """Split the tree into body text parts and attachments, as `parse_message` does."""
    found = _Classified()
    _classify_part(structure, found, top=True, related=False)
    return found


def _classify_part(part: BodyPart, found: _Classified, *, top: bool, related: bool) -> None:
    if part.is_multipart:
        subtype = part.content_type.partition("/")[2]
        root = _related_root(part) if subtype == "related" else -1
        for index, child in enumerate(part.children):
            mark = len(found.texts)
            _classify_part(child, found, top=False, related=subtype == "related" and index != root)
            if subtype == "alternative":
                _keep_last_of_each_kind(found.texts, mark)
        return
    if is_body_text(part.content_type, part.disposition, part.filename, related=related, top=top):
        found.texts.append(part)
    else:
        found.attachments.append((part, related))


def _keep_last_of_each_kind(texts: list[BodyPart], mark: int) -> None:
    """Within one alternative, keep the last text/plain and the last text/html."""
    added = texts[mark:]
    if len(added) <= 1:
        return
    kept = [
        last
        for kind in ("text/plain", "text/html")
        if (last := next((p for p in reversed(added) if p.content_type == kind), None))
    ]
    del texts[mark:]
    texts.extend(sorted(kept, key=lambda part: added.index(part)))


def _related_root(part: BodyPart) -> int:
    start = part.params.get("start", "").strip().strip("<>")
    if start:
        for index, child in enumerate(part.children):
            if child.content_id == start:
                return index
    return 0


def text_sections(structure: BodyPart) -> list[tuple[str, str | None, str | None, str]]:
    """The body text parts to fetch for a message above the size cap.

    (section, charset, transfer encoding, subtype "plain" or "html") for each
    text/plain and text/html part of the message's own body, attachments and
    attached messages excluded; in multipart/alternative only the last part of
    each kind, as `parse_message` keeps.
    """
    try:
        return [
            (
                part.section,
                part.params.get("charset") or None,
                part.encoding,
                part.content_type.partition("/")[2],
            )
            for part in _classify(structure).texts
        ]
    except Exception:  # never raise: no text parts is a usable answer
        return []


def _pending_attachments(structure: BodyPart) -> list[PendingAttachment]:
    return [
        PendingAttachment(
            filename=part.filename,
            content_type=part.content_type,
            size=_estimated_decoded_size(part),
            content_id=part.content_id,
            disposition=part.disposition,
            related=related,
            section=part.section,
            encoding=part.encoding,
        )
        for part, related in _classify(structure).attachments
    ]


def _estimated_decoded_size(part: BodyPart) -> int:
    """Decoded size from the encoded size the server reports.

    Base64 is written in lines of 76 characters plus CRLF, 57 bytes each; when the
    line count is known (text parts) the line ends are subtracted exactly.
    Quoted-printable cannot be estimated without the content: its encoded size
    (an upper bound) is used.
    """
    if part.encoding != "base64":
        return part.size
    if part.lines is not None:
        return max(0, (part.size - 2 * part.lines) * 3 // 4)
    return part.size * 57 // 78


def attachments_from_structure(
    structure: BodyPart, *, html_body: str | None = None
) -> list[ParsedAttachment]:
    """The attachments of a BODYSTRUCTURE, as `parse_message` would list them.

    Sizes are estimated (see `_estimated_decoded_size`). A multipart/related
    resource is inline when `html_body` references its `cid:`; without an HTML
    body to check, a related resource with a Content-ID counts as inline.
    """
    try:
        pending = _pending_attachments(structure)
        if html_body is None:
            html_body = " ".join(f"cid:{item.content_id}" for item in pending if item.content_id)
        return finish_attachments(pending, html_body)
    except Exception:  # never raise
        return []


def parse_partial(
    header_bytes: bytes,
    structure: BodyPart | None,
    text_parts: dict[str, bytes],
    *,
    max_text_chars: int = 1_000_000,
) -> ParsedMessage:
    """A `ParsedMessage` from a message's header block, its BODYSTRUCTURE and the raw
    (still transfer-encoded) bytes of the sections `text_sections` picked.

    Used for messages above the size cap. A missing text section is noted and
    skipped; `structure` None (an unreadable BODYSTRUCTURE) gives the header fields
    only. Never raises.
    """
    notes: list[str] = []
    fields: hdr.Fields = []
    texts: list[str] = []
    htmls: list[str] = []
    pending: list[PendingAttachment] = []
    parts: list[MimePart] = []
    charset_hint: str | None = None
    try:
        fields, _ = header_fields(bytes(header_bytes), 0, len(header_bytes), notes, "header")
        if structure is None:
            notes.append("no usable BODYSTRUCTURE; header fields only")
        else:
            if any(part.truncated for part in iter_parts(structure)):
                notes.append(
                    f"BODYSTRUCTURE nested deeper than {MAX_DEPTH} levels or with more than "
                    f"{MAX_PARTS} parts; the parts beyond were left out"
                )
            parts = _numbered_parts(structure)
            pending = _pending_attachments(structure)
            for section, charset, encoding, subtype in text_sections(structure):
                data = text_parts.get(section)
                if data is None:
                    notes.append(f"part {section}: text not fetched")
                    continue
                # Bound the work as parse_message does (see its body_text).
                data = bytes(data[: max_text_chars * 6 + 1024])
                text = body_text(data, encoding, charset, notes, f"part {section}")
                (htmls if subtype == "html" else texts).append(text)
                charset_hint = charset_hint or charset
    except Exception as exc:  # one bad message must not stop a mailbox
        notes.append(f"structure unreadable ({type(exc).__name__}); partial result")
    return assemble(
        fields,
        texts=texts,
        htmls=htmls,
        attachments=pending,
        parts=parts,
        notes=notes,
        max_text_chars=max_text_chars,
        charset_hint=charset_hint,
    )
