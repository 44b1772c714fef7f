"""MIME parts on raw bytes: header blocks, Content-* fields, boundaries, decoding.

The building blocks of `mailsvc.mime.parse`. Parts are addressed by offsets into
the message's bytes, never copied until a text part is decoded, so an attachment
costs a boundary search and a count, not a pass of Python code per line.
"""

from __future__ import annotations

import binascii
import re
from typing import NamedTuple

from mailsvc.mime import headers as hdr
from mailsvc.mime.charset import decode_text

MAX_HEADER_BYTES = 256 * 1024
MAX_PARTS = 500
IDENTITY_ENCODINGS = frozenset({None, "7bit", "8bit", "binary"})
_UUENCODE = frozenset({"x-uuencode", "uuencode", "x-uue", "uue"})
# RFC 2045 tokens (lower-cased); the lengths fit the attachments table's columns.
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9a-z]{1,32}")
_MEDIA_TYPE = re.compile(r"[!#$%&'*+\-.^_`|~0-9a-z]{1,127}/[!#$%&'*+\-.^_`|~0-9a-z]{1,127}")


class PartHead(NamedTuple):
    """The MIME fields of one part's header, and where its body starts."""

    content_type: str
    params: dict[str, str]
    disposition: str | None
    disposition_params: dict[str, str]
    encoding: str | None
    content_id: str | None
    body_start: int

    @property
    def filename(self) -> str | None:
        return self.disposition_params.get("filename") or self.params.get("name") or None


def part_head(
    raw: bytes, start: int, end: int, notes: list[str], where: str, default_type: str
) -> PartHead:
    """Parse the MIME header fields of the part spanning `raw[start:end]`."""
    fields, body_start = header_fields(raw, start, end, notes, where)
    return head_from_fields(fields, body_start, notes, where, default_type)


def header_fields(
    raw: bytes, start: int, end: int, notes: list[str], where: str
) -> tuple[hdr.Fields, int]:
    """The header fields at `raw[start:end]` and the absolute offset of the body."""
    if raw.startswith(b"\n", start, end):
        return [], start + 1
    if raw.startswith(b"\r\n", start, end):
        return [], start + 2
    window = min(end, start + MAX_HEADER_BYTES)
    # Look for LF LF only before the first CRLF CRLF: a CRLF message has none, and
    # searching the whole window for it would scan every attachment part.
    stop = raw.find(b"\n\r\n", start, window)
    stop = stop + 3 if stop >= 0 else -1
    bare = raw.find(b"\n\n", start, stop if stop >= 0 else window)
    if bare >= 0:
        stop = bare + 2
    if stop < 0:
        stop = window
        if window < end:
            notes.append(f"{where}: no end of header within {MAX_HEADER_BYTES} bytes")
    # Latin-1 maps each byte to one character, so offsets carry over unchanged.
    fields, offset = hdr.split_fields(raw[start:stop].decode("latin-1"), notes, where)
    return fields, start + offset


def head_from_fields(
    fields: hdr.Fields, body_start: int, notes: list[str], where: str, default_type: str
) -> PartHead:
    """Interpret Content-Type, -Disposition, -Transfer-Encoding and -ID fields."""
    content_type, params = default_type, {}
    disposition: str | None = None
    disposition_params: dict[str, str] = {}
    encoding: str | None = None
    content_id: str | None = None
    seen: set[str] = set()
    for name, value in fields:
        if not name.startswith("content-") or name in seen:
            continue  # the first of a repeated field wins, as in the stdlib
        seen.add(name)
        if name == "content-type":
            main, rest = hdr.split_value(value)
            valid = media_type(main)
            if valid is not None:
                content_type = valid
            elif main:
                shown = hdr.clean(main)[:60]
                notes.append(f"{where}: invalid content type {shown!r}, read as text/plain")
                content_type = "text/plain"
            params = hdr.parameters(rest, notes, where)
        elif name == "content-disposition":
            main, rest = hdr.split_value(value)
            disposition = main or None
            disposition_params = hdr.parameters(rest, notes, where)
        elif name == "content-transfer-encoding":
            encoding = transfer_encoding(value)
            if encoding is None and value.strip():
                shown = hdr.clean(value)[:32]
                notes.append(f"{where}: invalid transfer encoding {shown!r}, ignored")
        elif name == "content-id":
            ids = hdr.message_ids(value)
            content_id = ids[0] if ids else (hdr.clean(value).strip("<>") or None)
    return PartHead(
        content_type=content_type,
        params=params,
        disposition=disposition,
        disposition_params=disposition_params,
        encoding=encoding,
        content_id=content_id,
        body_start=body_start,
    )


def media_type(value: str) -> str | None:
    """`value` as a lower-case type/subtype if it is a valid media type, else None."""
    value = value.strip().lower()
    return value if _MEDIA_TYPE.fullmatch(value) else None


def transfer_encoding(value: str) -> str | None:
    """A Content-Transfer-Encoding value lower-cased, or None if empty or not a token."""
    value = value.strip().lower()
    return value if _TOKEN.fullmatch(value) else None


def split_multipart(
    raw: bytes, start: int, end: int, boundary: bytes
) -> tuple[list[tuple[int, int]], bool, bool]:
    """The (start, end) spans of the body parts of the multipart body `raw[start:end]`.

    A delimiter is `--boundary` at the start of a line, followed by optional
    whitespace; the line break before it belongs to it (RFC 2046 5.1.1). Returns
    the spans, whether the close delimiter was seen, and whether it stopped after
    `MAX_PARTS` parts.
    """
    delimiter = b"--" + boundary
    spans: list[tuple[int, int]] = []
    part_start = -1
    if raw.startswith(delimiter, start, end):
        candidate = start
    else:
        found = raw.find(b"\n" + delimiter, start, end)
        candidate = found + 1 if found >= 0 else -1
    while candidate >= 0:
        after = candidate + len(delimiter)
        closing = raw.startswith(b"--", after, end)
        line_end = raw.find(b"\n", after, end)
        line_end = end if line_end < 0 else line_end + 1
        padding = raw[after + 2 if closing else after : line_end]
        # A longer boundary that merely starts with ours is not a delimiter; junk after
        # a close delimiter is tolerated (mailers have been seen to write it).
        if closing or not padding.strip():
            if part_start >= 0:
                spans.append((part_start, _line_break_start(raw, part_start, candidate)))
                if len(spans) >= MAX_PARTS and not closing:
                    return spans, False, True
            if closing:
                return spans, True, False
            part_start = line_end
        found = raw.find(b"\n" + delimiter, after, end)
        candidate = found + 1 if found >= 0 else -1
    if part_start >= 0:
        spans.append((part_start, end))
    return spans, False, False


def _line_break_start(raw: bytes, part_start: int, delimiter_at: int) -> int:
    """Where the part before a delimiter ends: before the CRLF (or LF) preceding it."""
    end = delimiter_at - 1 if delimiter_at > part_start else delimiter_at
    if end > part_start and raw[end - 1] == 0x0D:
        end -= 1
    return max(end, part_start)


def decode_transfer(data: bytes, encoding: str | None, notes: list[str], where: str) -> bytes:
    """Undo a Content-Transfer-Encoding; unknown encodings pass through (noted)."""
    if encoding in IDENTITY_ENCODINGS:
        return data
    if encoding == "base64":
        return hdr.decode_base64(data, notes, where)
    if encoding == "quoted-printable":
        return binascii.a2b_qp(data)
    if encoding in _UUENCODE:
        return _decode_uu(data, notes, where)
    notes.append(f"{where}: unknown transfer encoding {encoding!r:.40}, left as is")
    return data


def _decode_uu(data: bytes, notes: list[str], where: str) -> bytes:
    out: list[bytes] = []
    for line in data.splitlines():
        if line.startswith(b"begin ") or not line.strip():
            continue
        if line.strip() == b"end":
            break
        try:
            out.append(binascii.a2b_uu(line))
        except binascii.Error:
            notes.append(f"{where}: invalid uuencoded line skipped")
    return b"".join(out)


def decoded_size(raw: bytes, head: PartHead, end: int, notes: list[str], section: str) -> int:
    """Size in bytes of a part's decoded content, without decoding base64.

    For base64 the decoded size follows from the count of base64 characters: three
    bytes per four characters, less one per "=" of padding. Counting line breaks with
    `bytes.count` is about three times cheaper than decoding, and attachments are
    most of a mailbox's bytes. Stray characters other than CR/LF (rare; spaces,
    garbage) make it an estimate within a few bytes, which is fine for a size shown
    to users. Quoted-printable is decoded (C speed, and rarely large).
    """
    start = head.body_start
    if end <= start:
        return 0
    encoding = head.encoding
    if encoding == "base64":
        characters = end - start - raw.count(b"\n", start, end) - raw.count(b"\r", start, end)
        tail = raw[max(start, end - 8) : end].rstrip()
        padding = len(tail) - len(tail.rstrip(b"="))
        if (characters - padding) % 4 == 1 or (characters % 4 and not padding):
            notes.append(f"part {section}: base64 length is not a multiple of 4 (truncated?)")
        return max(0, (characters - padding) * 3 // 4)
    if encoding == "quoted-printable":
        return len(binascii.a2b_qp(raw[start:end]))
    if encoding in _UUENCODE:
        return len(_decode_uu(raw[start:end], [], ""))
    return end - start


def body_text(
    data: bytes, encoding: str | None, charset: str | None, notes: list[str], where: str
) -> str:
    """Text of a body part from its raw (transfer-encoded) bytes, with LF line ends."""
    text = decode_text(decode_transfer(data, encoding, notes, where), charset, notes, where)
    if "\r" in text:
        text = text.replace("\r\n", "\n")
    if "\x00" in text:
        text = text.replace("\x00", "")  # PostgreSQL text cannot hold NUL
    return text
