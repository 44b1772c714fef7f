"""Header fields: splitting a header block, RFC 2047 words, RFC 2231 parameters,
addresses, message ids and dates.

Everything works on `str` made from the raw bytes with Latin-1, a lossless one byte
to one character mapping: the structure of a header block is ASCII, and raw 8-bit
bytes (UTF-8 per RFC 6532, or a legacy charset) are turned into text only in the
values that are kept, with `text_value`. All functions tolerate any input.
"""

from __future__ import annotations

import binascii
import re
from datetime import UTC, datetime, timedelta, timezone
from email.utils import getaddresses, parsedate_tz

from mailsvc.mime.charset import decode_text
from mailsvc.mime.model import Address

Fields = list[tuple[str, str]]
"""(lower-cased name, unfolded raw value) in header order."""

# A field line: a name of printable ASCII without colon or space, then a colon.
# Whitespace before the colon is obsolete syntax (RFC 5322 4.5) but still seen.
_FIELD = re.compile(r"([\x21-\x39\x3b-\x7e]+)[ \t]*:")
# RFC 2047 encoded word. The text may not contain "?" or whitespace; many mailers put
# spaces inside anyway (from folding), so allow them and let the decoders cope.
_ENCODED_WORD = re.compile(r"=\?([^?\s]{1,75})\?([bBqQ])\?([^?]*)\?=")
_BETWEEN_WORDS = re.compile(r"[ \t\r\n]*")
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f]")
_WHITESPACE = re.compile(r"\s+")
_MSG_ID = re.compile(r"<([^<>]*)>")
_PARAM_NAME = re.compile(r"\s*([^\s=;\"]+)\s*")
_RFC2231_SECTION = re.compile(r"^(.*?)\*(\d+)(\*?)$")
_PERCENT = re.compile(rb"%([0-9A-Fa-f]{2})")
_ADDR_SPEC = r"[^<>()\[\]\s,;:\"\\@]+@[^<>()\[\]\s,;:\"\\@]+"
_SIMPLE_MAILBOX = re.compile(
    r"\s*(?:"
    rf"(?:\"((?:[^\"\\]|\\.)*)\"|([^\"<>()\[\],;:@\\]*?))\s*<({_ADDR_SPEC})>"
    rf"|({_ADDR_SPEC})"
    r")\s*(?:,|$)"
)
_QUOTED_PAIR = re.compile(r"\\(.)", re.DOTALL)
_QUOTED_STRING = re.compile(r'"((?:[^"\\]|\\.)*)"?', re.DOTALL)
_MAX_ID = 998  # RFC 5322 line length: a longer "id" is garbage, cut it to a sane size
_MAX_FIELDS = 2_000  # a header block of more fields than this is an attack or garbage


def split_fields(block: str, notes: list[str], where: str) -> tuple[Fields, int]:
    """Parse the fields at the start of `block` (Latin-1 text of header and body).

    Returns the fields and the offset in `block` where the body starts: after the
    blank line, or at the first line that is neither a field nor a continuation
    (noted as a missing header/body separator, as the stdlib's feed parser does).
    """
    fields: Fields = []
    position = 0
    length = len(block)
    name = ""
    pieces: list[str] = []
    first = True
    while position < length:
        newline = block.find("\n", position)
        end = length if newline < 0 else newline + 1
        line = block[position:end]
        stripped = line.rstrip("\r\n")
        if not stripped:
            position = end  # the blank separator line
            break
        if stripped[0] in " \t":
            if pieces:
                pieces.append(stripped)
            elif first:
                notes.append(f"{where}: header starts with a continuation line")
        else:
            match = _FIELD.match(stripped)
            if match is None:
                if first and stripped.startswith("From "):
                    position = end  # mbox "From " envelope line
                    first = False
                    continue
                if fields or pieces:
                    notes.append(f"{where}: malformed header line, header block ended early")
                break
            if pieces:
                fields.append((name, "".join(pieces)))
                if len(fields) >= _MAX_FIELDS:
                    notes.append(f"{where}: more than {_MAX_FIELDS} header fields, rest ignored")
                    pieces = []
                    position = _skip_to_blank_line(block, end)
                    break
            name = match.group(1).lower()
            pieces = [stripped[match.end() :]]
        first = False
        position = end
    if pieces:
        fields.append((name, "".join(pieces)))
    return fields, position


def _skip_to_blank_line(block: str, position: int) -> int:
    ends = [
        found + len(separator)
        for separator in ("\n\r\n", "\n\n")
        if (found := block.find(separator, position)) >= 0
    ]
    return min(ends, default=len(block))


def first(fields: Fields, name: str) -> str | None:
    """The value of the first field called `name` (lower case), or None."""
    for field_name, value in fields:
        if field_name == name:
            return value
    return None


def every(fields: Fields, name: str) -> list[str]:
    """The values of all fields called `name` (lower case), in order."""
    return [value for field_name, value in fields if field_name == name]


def clean(value: str) -> str:
    """`value` without control characters and surrounding whitespace."""
    if not value.isprintable():
        value = _CONTROL.sub("", value.replace("\t", " "))
    return value.strip()


def text_value(raw: str, notes: list[str], where: str, charset_hint: str | None = None) -> str:
    """Unfolded header text: raw 8-bit decoded, RFC 2047 words decoded, controls removed.

    Raw 8-bit bytes are tried as UTF-8 (RFC 6532), then as `charset_hint` (the body's
    charset: a mailer that writes raw 8-bit headers writes them in that charset).
    """
    if not raw.isascii():
        raw = _decode_raw(raw, notes, where, charset_hint)
    if "=?" in raw:
        raw = decode_words(raw, notes, where)
    return clean(raw)


def _decode_raw(raw: str, notes: list[str], where: str, charset_hint: str | None) -> str:
    try:
        data = raw.encode("latin-1")
    except UnicodeEncodeError:
        return raw  # already text (a caller that decoded it), not Latin-1 stand-ins
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    quiet: list[str] = []
    text = decode_text(data, charset_hint or "cp1252", quiet, where)
    notes.append(f"{where}: raw 8-bit bytes in header decoded as {charset_hint or 'cp1252'}")
    return text


def decode_words(value: str, notes: list[str], where: str) -> str:
    """Decode the RFC 2047 encoded words in `value`.

    Whitespace between adjacent encoded words is dropped (RFC 2047 6.2), and adjacent
    words in the same charset are joined as bytes before decoding, because mailers
    split multi-byte characters across words.
    """
    out: list[str] = []
    position = 0
    run_charset: str | None = None
    run: list[bytes] = []

    def flush() -> None:
        nonlocal run_charset
        if run:
            out.append(decode_text(b"".join(run), run_charset, notes, where))
            run.clear()
        run_charset = None

    for match in _ENCODED_WORD.finditer(value):
        between = value[position : match.start()]
        if between and not (run and _BETWEEN_WORDS.fullmatch(between)):
            flush()
            out.append(between)
        charset, encoding, text = match.groups()
        # RFC 2231 section 5 adds a language to encoded words: "utf-8*en".
        charset = charset.split("*", 1)[0].lower()
        data = _decode_word(encoding, text, notes, where)
        if charset != run_charset:
            flush()
            run_charset = charset
        run.append(data)
        position = match.end()
    flush()
    out.append(value[position:])
    return "".join(out)


def _decode_word(encoding: str, text: str, notes: list[str], where: str) -> bytes:
    data = text.encode("latin-1", errors="replace")
    if encoding in "qQ":
        return binascii.a2b_qp(data, header=True)
    return decode_base64(data.replace(b" ", b""), notes, where)


def decode_base64(data: bytes, notes: list[str], where: str) -> bytes:
    """Decode base64 leniently: stray characters dropped, bad padding repaired (noted)."""
    try:
        return binascii.a2b_base64(data)
    except binascii.Error:
        pass
    notes.append(f"{where}: invalid base64 repaired")
    cleaned = re.sub(rb"[^A-Za-z0-9+/]", b"", data)
    if len(cleaned) % 4 == 1:
        cleaned = cleaned[:-1]  # a lone trailing sextet carries no whole byte
    try:
        return binascii.a2b_base64(cleaned + b"=" * (-len(cleaned) % 4))
    except binascii.Error:
        return b""


def split_value(raw: str) -> tuple[str, str]:
    """("main/value", rest after the first ';') of a Content-Type-like field."""
    head, _, rest = raw.partition(";")
    return head.strip().lower(), rest


def parameters(rest: str, notes: list[str], where: str) -> dict[str, str]:
    """Parse `; name=value` parameters, with RFC 2231 continuations and charsets.

    Names are lower-cased. Values are unquoted; RFC 2231 values (`name*=utf-8''...`,
    `name*0*=...`) are joined and decoded; RFC 2047 words inside quoted values (an
    Outlook habit, not standard) are decoded too. The first occurrence of a name wins.
    """
    pairs: list[tuple[str, str]] = []
    position = 0
    length = len(rest)
    while position < length:
        if rest[position] in "; \t\r\n":
            position += 1
            continue
        match = _PARAM_NAME.match(rest, position)
        if match is None:
            break
        name = match.group(1)
        position = match.end()
        if position >= length or rest[position] != "=":
            # A bare token without "=": skip to the next parameter.
            next_semicolon = rest.find(";", position)
            position = length if next_semicolon < 0 else next_semicolon
            continue
        position += 1
        while position < length and rest[position] in " \t\r\n":
            position += 1
        quoted = _QUOTED_STRING.match(rest, position)
        if quoted is not None:
            value = quoted.group(1)
            if "\\" in value:
                value = _QUOTED_PAIR.sub(r"\1", value)
            position = quoted.end()
        else:
            end = rest.find(";", position)
            end = length if end < 0 else end
            value = rest[position:end].strip()
            position = end
        pairs.append((name, value))
    return combine_parameters(pairs, notes, where)


def combine_parameters(
    pairs: list[tuple[str, str]], notes: list[str], where: str
) -> dict[str, str]:
    """Parameters from (name, unquoted value) pairs: RFC 2231 joined, text decoded.

    Shared by header parsing and BODYSTRUCTURE, which lists parameters as pairs
    exactly as the header had them (RFC 2231 sections included).
    """
    simple: dict[str, str] = {}
    # name -> [(section number, extended, value)] for RFC 2231 parameters
    sections: dict[str, list[tuple[int, bool, str]]] = {}
    for raw_name, value in pairs:
        name = raw_name.strip().lower()
        continued = _RFC2231_SECTION.match(name)
        if continued:
            base, number, star = continued.groups()
            sections.setdefault(base, []).append((int(number[:6]), bool(star), value))
        elif name.endswith("*"):
            sections.setdefault(name[:-1], []).append((0, True, value))
        elif name not in simple:
            simple[name] = value
    for name, value in simple.items():
        if not value.isascii():
            value = _decode_raw(value, notes, where, None)
        if "=?" in value:
            value = decode_words(value, notes, where)
        simple[name] = value
    # An RFC 2231 value wins over a plain one of the same name (RFC 2231 4.1 lets
    # senders give both, the plain one for old readers).
    for name, pieces in sections.items():
        simple[name] = _join_rfc2231(pieces, notes, where)
    return simple


def _join_rfc2231(pieces: list[tuple[int, bool, str]], notes: list[str], where: str) -> str:
    pieces.sort(key=lambda piece: piece[0])
    charset: str | None = None
    data: list[bytes] = []
    for index, (_, extended, value) in enumerate(pieces):
        if extended and index == 0 and value.count("'") >= 2:
            charset, _, value = value.split("'", 2)
        if extended:
            data.append(_PERCENT.sub(_unpercent, _raw_bytes(value)))
        else:
            data.append(_raw_bytes(value))
    return decode_text(b"".join(data), charset or None, notes, where)


def _raw_bytes(value: str) -> bytes:
    """The bytes a Latin-1 stand-in string came from (UTF-8 for text given as text)."""
    try:
        return value.encode("latin-1")
    except UnicodeEncodeError:
        return value.encode("utf-8")


def _unpercent(match: re.Match[bytes]) -> bytes:
    return bytes([int(match.group(1), 16)])


def addresses(
    values: list[str], notes: list[str], where: str, charset_hint: str | None = None
) -> list[Address]:
    """Mailboxes of address fields: groups flattened, names decoded, garbage skipped."""
    if not values:
        return []
    found: list[Address] = []
    pairs: list[tuple[str, str]] = []
    for value in values:
        simple = _simple_mailboxes(value)
        if simple is None:
            try:
                simple = getaddresses([value])
            except Exception:  # the stdlib parser has crashed on garbage before
                notes.append(f"{where}: unparseable address list")
                continue
        pairs.extend(simple)
    for name, address in pairs:
        # Raw 8-bit bytes arrive as Latin-1 stand-ins: decode first, then drop controls,
        # or the bytes 0x80-0x9f inside UTF-8 characters would go as "C1 controls".
        if not address.isascii():
            address = _decode_raw(address, notes, where, charset_hint)
        address = _CONTROL.sub("", address).strip()
        if not address:
            continue
        display = text_value(name, notes, where, charset_hint) if name else ""
        display = _WHITESPACE.sub(" ", display).strip()
        found.append(Address(name=display or None, address=address))
    return found


def _simple_mailboxes(value: str) -> list[tuple[str, str]] | None:
    """(name, address) pairs of a list of plain mailboxes, or None for anything else.

    Most address fields are `a@b` or `Name <a@b>` lists; matching those with one
    regular expression is several times faster than the stdlib's character-level
    parser, which still handles everything else (groups, comments, garbage).
    """
    pairs: list[tuple[str, str]] = []
    position = 0
    length = len(value)
    while position < length:
        match = _SIMPLE_MAILBOX.match(value, position)
        if match is None or match.end() == position:
            return None
        quoted, plain, angle, bare = match.groups()
        if bare is not None:
            pairs.append(("", bare))
        else:
            name = _QUOTED_PAIR.sub(r"\1", quoted) if quoted is not None else plain or ""
            pairs.append((name, angle))
        position = match.end()
    return pairs


def message_ids(raw: str) -> list[str]:
    """The `<id>`s of a Message-ID/In-Reply-To/References value, without brackets.

    A lone id written without brackets (seen in old mailers) counts as one.
    """
    found = [_WHITESPACE.sub("", match) for match in _MSG_ID.findall(raw)]
    found = [item for item in found if item]
    if not found:
        bare = raw.strip()
        if bare and "@" in bare and not any(char.isspace() for char in bare):
            found = [bare.strip("<>")]
    return [_CONTROL.sub("", item)[:_MAX_ID] for item in found]


def parse_date(raw: str, now: datetime) -> datetime | None:
    """An aware UTC datetime from an RFC 5322 date, or None if unparseable or absurd.

    Absurd means before 1970 or more than a year after `now`: such dates are clock
    errors or spam, and sorting or threading by them helps nobody.
    """
    try:
        parsed = parsedate_tz(raw)
        if parsed is None:
            return None
        year, month, day, hour, minute, second = parsed[:6]
        offset = parsed[9] or 0
        if abs(offset) >= 86_400:
            offset = 0  # an impossible zone: keep the wall time, read it as UTC
        zone = timezone(timedelta(seconds=offset))
        moment = datetime(year, month, day, hour, minute, min(second, 59), tzinfo=zone)
        moment = moment.astimezone(UTC)
    except (ValueError, OverflowError, TypeError, IndexError):
        return None
    if moment.year < 1970 or moment > now + timedelta(days=366):
        return None
    return moment
