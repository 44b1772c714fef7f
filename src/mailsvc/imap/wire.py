"""Pure parsing of IMAP server responses (RFC 3501/9051, 7162).

aioimaplib hands a response over as a list whose `bytes` items are text lines and
whose `bytearray` items are literal payloads (`{123}` followed by 123 bytes). This
module turns those into plain data; it never raises on hostile input other than
`ImapProtocolError`, which callers treat as a protocol failure.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime

from mailsvc.imap import names
from mailsvc.imap.errors import ImapProtocolError

_ATOM_END = set(b' ()[]{}"\r\n')


def _tokens(segments: Sequence[bytes | bytearray]) -> list[object]:
    """Tokenize text lines and literal payloads into nested lists.

    Atoms become `str`, quoted strings `str`, literals stay the `bytearray` they
    arrived in (a 25 MB message body is not copied here), NIL `None`,
    parenthesized lists `list`. A `BODY[...]`-style atom keeps its bracket section as
    part of the atom (`"BODY[1.2]"`), which is what callers match on.
    """
    root: list[object] = []
    stack: list[list[object]] = [root]
    for segment in segments:
        if isinstance(segment, bytearray):
            stack[-1].append(segment)
            continue
        data = bytes(segment)
        length = len(data)
        i = 0
        while i < length:
            byte = data[i]
            if byte in (0x20, 0x0D, 0x0A):
                i += 1
            elif byte == 0x28:  # (
                child: list[object] = []
                stack[-1].append(child)
                stack.append(child)
                i += 1
            elif byte == 0x29:  # )
                if len(stack) > 1:
                    stack.pop()
                i += 1
            elif byte == 0x22:  # "
                i += 1
                out = bytearray()
                while i < length and data[i] != 0x22:
                    if data[i] == 0x5C and i + 1 < length:  # backslash escape
                        i += 1
                    out.append(data[i])
                    i += 1
                i += 1
                stack[-1].append(out.decode("utf-8", errors="replace"))
            elif byte == 0x7B:  # {n} announces the literal that follows as its own segment
                end = data.find(b"}", i)
                i = length if end < 0 else end + 1
            else:
                start = i
                depth = 0
                while i < length:
                    current = data[i]
                    if current == 0x5B:  # [ ... ] belongs to the atom (BODY[HEADER.FIELDS (A B)])
                        depth += 1
                    elif current == 0x5D:
                        depth -= 1
                    elif depth <= 0 and current in _ATOM_END:
                        break
                    i += 1
                atom = data[start:i].decode("utf-8", errors="replace")
                stack[-1].append(None if atom.upper() == "NIL" else atom)
    return root


@dataclass(slots=True)
class FetchedItem:
    """The data of one `* n FETCH (...)` response."""

    sequence: int
    uid: int | None = None
    flags: tuple[str, ...] | None = None
    modseq: int | None = None
    internal_date: datetime | None = None
    size: int | None = None
    # Literal payloads are the buffers they were read into (bytearray), not copies.
    body: bytes | bytearray | None = None
    sections: dict[str, bytes | bytearray] = field(default_factory=dict)
    bodystructure: list[object] | None = None
    gm_thrid: int | None = None


def _as_int(value: object) -> int | None:
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return None


_MONTH_NAMES = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_MONTHS = {name: number for number, name in enumerate(_MONTH_NAMES, 1)}
_INTERNALDATE = re.compile(
    r"^\s*(\d{1,2})-([A-Za-z]{3})-(\d{4}) (\d{2}):(\d{2}):(\d{2}) ([+-])(\d{2})(\d{2})$"
)


def imap_date(day: date) -> str:
    """A SEARCH date (`1-Feb-2026`); month names are English whatever the locale."""
    return f"{day.day}-{_MONTH_NAMES[day.month - 1]}-{day.year}"


def parse_internal_date(text: str) -> datetime | None:
    """`"17-Jul-1996 02:44:25 -0700"` as an aware UTC datetime (None if malformed)."""
    match = _INTERNALDATE.match(text)
    if not match:
        return None
    day, month, year, hour, minute, second, sign, off_h, off_m = match.groups()
    month_number = _MONTHS.get(month.capitalize())
    if month_number is None:
        return None
    try:
        local = datetime(int(year), month_number, int(day), int(hour), int(minute), int(second))
    except ValueError:
        return None
    offset_seconds = (int(off_h) * 3600 + int(off_m) * 60) * (1 if sign == "+" else -1)
    timestamp = local.replace(tzinfo=UTC).timestamp() - offset_seconds
    return datetime.fromtimestamp(timestamp, UTC)


def _payload(value: object) -> bytes | bytearray | None:
    if isinstance(value, bytes | bytearray):
        return value
    if isinstance(value, str):
        return value.encode()
    return None


def _fetch_item(sequence: int, attributes: list[object]) -> FetchedItem:
    item = FetchedItem(sequence=sequence)
    pairs = iter(attributes)
    for name in pairs:
        value = next(pairs, None)
        if not isinstance(name, str):
            continue
        key = name.upper()
        if key == "UID":
            item.uid = _as_int(value)
        elif key == "FLAGS":
            item.flags = (
                tuple(f for f in value if isinstance(f, str)) if isinstance(value, list) else ()
            )
        elif key == "MODSEQ":
            item.modseq = _as_int(value[0]) if isinstance(value, list) and value else None
        elif key == "INTERNALDATE":
            item.internal_date = parse_internal_date(value) if isinstance(value, str) else None
        elif key == "RFC822.SIZE":
            item.size = _as_int(value)
        elif key == "X-GM-THRID":
            item.gm_thrid = _as_int(value)
        elif key == "BODYSTRUCTURE":
            item.bodystructure = value if isinstance(value, list) else None
        elif key.startswith(("BODY[", "BINARY[")):
            section = key[key.index("[") + 1 : key.rindex("]")] if "]" in key else ""
            # An origin octet ("BODY[]<0>") never appears without a partial request.
            payload = _payload(value)
            if section == "":
                item.body = payload
            elif payload is not None:
                item.sections[section] = payload
    return item


def _split_responses(lines: Iterable[bytes | bytearray]) -> Iterator[list[bytes | bytearray]]:
    """Group response lines so that each group starts at a `n FETCH (` line."""
    group: list[bytes | bytearray] = []
    for line in lines:
        if isinstance(line, bytes) and _FETCH_START.match(line):
            if group:
                yield group
            group = [line]
        elif group:
            group.append(line)
    if group:
        yield group


_FETCH_START = re.compile(rb"^(?:\* )?(\d+) FETCH ", re.IGNORECASE)


def parse_fetch(lines: Iterable[bytes | bytearray]) -> list[FetchedItem]:
    """Every FETCH response among `lines` (other untagged lines are skipped)."""
    items = []
    for group in _split_responses(lines):
        first = group[0]
        assert isinstance(first, bytes)
        match = _FETCH_START.match(first)
        assert match is not None
        rest: list[bytes | bytearray] = [first[match.end() :], *group[1:]]
        tokens = _tokens(rest)
        attributes = next((t for t in tokens if isinstance(t, list)), [])
        items.append(_fetch_item(int(match.group(1)), attributes))
    return items


@dataclass(frozen=True, slots=True)
class ListedMailbox:
    """One `LIST` answer: decoded name, hierarchy delimiter and attributes."""

    name: str
    raw_name: str
    delimiter: str | None
    attributes: frozenset[str]


def parse_list(lines: Iterable[bytes | bytearray]) -> list[ListedMailbox]:
    """`LIST` responses; names decoded from modified UTF-7 unless UTF8=ACCEPT is on."""
    mailboxes: list[ListedMailbox] = []
    pending: list[bytes | bytearray] = []

    def flush() -> None:
        tokens = _tokens(pending)
        pending.clear()
        if len(tokens) < 3 or not isinstance(tokens[0], list):
            return
        attributes = frozenset(a for a in tokens[0] if isinstance(a, str))
        delimiter = tokens[1] if isinstance(tokens[1], str) else None
        raw = tokens[2]
        raw_name = raw.decode("utf-8", "replace") if isinstance(raw, bytes | bytearray) else raw
        if not isinstance(raw_name, str):
            return
        mailboxes.append(ListedMailbox(names.decode(raw_name), raw_name, delimiter, attributes))

    for line in lines:
        # aioimaplib strips "* LIST " when it dispatches by command name, and keeps
        # "LIST " when the command was sent raw; accept both.
        starts = isinstance(line, bytes) and (
            line.upper().startswith((b"LIST ", b"* LIST ")) or line.startswith(b"(")
        )
        if starts:
            assert isinstance(line, bytes)
            if pending:
                flush()
            text = line.removeprefix(b"* ")
            pending.append(text[5:] if text.upper().startswith(b"LIST ") else text)
        elif pending:
            pending.append(line)
    if pending:
        flush()
    return mailboxes


@dataclass(slots=True)
class SelectedState:
    """What SELECT (or EXAMINE) told about a mailbox."""

    exists: int = 0
    uidvalidity: int | None = None
    uidnext: int | None = None
    highestmodseq: int | None = None
    nomodseq: bool = False
    vanished: list[int] = field(default_factory=list)
    changed: list[FetchedItem] = field(default_factory=list)


_RESP_CODE = re.compile(rb"\[(UIDVALIDITY|UIDNEXT|HIGHESTMODSEQ) (\d+)\]", re.IGNORECASE)
_EXISTS = re.compile(rb"^(?:\* )?(\d+) EXISTS", re.IGNORECASE)
_VANISHED = re.compile(rb"^(?:\* )?VANISHED (?:\(EARLIER\) )?([0-9:,*]+)", re.IGNORECASE)


def parse_select(lines: Sequence[bytes | bytearray]) -> SelectedState:
    state = SelectedState()
    for line in lines:
        if not isinstance(line, bytes):
            continue
        if match := _EXISTS.match(line):
            state.exists = int(match.group(1))
        elif match := _VANISHED.match(line):
            state.vanished.extend(expand_uid_set(match.group(1).decode()))
        if b"NOMODSEQ" in line.upper():
            state.nomodseq = True
        for code, number in _RESP_CODE.findall(line):
            value = int(number)
            name = code.upper()
            if name == b"UIDVALIDITY":
                state.uidvalidity = value
            elif name == b"UIDNEXT":
                state.uidnext = value
            else:
                state.highestmodseq = value
    state.changed = parse_fetch(lines)
    return state


@dataclass(frozen=True, slots=True)
class MailboxStatus:
    """A mailbox's STATUS answer (absent items are None)."""

    messages: int | None = None
    uidnext: int | None = None
    uidvalidity: int | None = None
    unseen: int | None = None
    highestmodseq: int | None = None


def parse_status(lines: Sequence[bytes | bytearray]) -> dict[str, MailboxStatus]:
    """STATUS answers (from LIST-STATUS) by decoded mailbox name."""
    statuses: dict[str, MailboxStatus] = {}
    for line in lines:
        if not isinstance(line, bytes) or not line.upper().startswith((b"STATUS ", b"* STATUS ")):
            continue
        tokens = _tokens([line.removeprefix(b"* ")])
        if len(tokens) < 3 or not isinstance(tokens[2], list):
            continue
        name = tokens[1]
        if isinstance(name, bytes | bytearray):
            name = name.decode("utf-8", "replace")
        if not isinstance(name, str):
            continue
        values = tokens[2]
        fields = {
            str(values[i]).upper(): int(str(values[i + 1]))
            for i in range(0, len(values) - 1, 2)
            if str(values[i + 1]).isdigit()
        }
        statuses[names.decode(name)] = MailboxStatus(
            messages=fields.get("MESSAGES"),
            uidnext=fields.get("UIDNEXT"),
            uidvalidity=fields.get("UIDVALIDITY"),
            unseen=fields.get("UNSEEN"),
            highestmodseq=fields.get("HIGHESTMODSEQ"),
        )
    return statuses


def parse_vanished(lines: Iterable[bytes | bytearray]) -> list[int]:
    uids: list[int] = []
    for line in lines:
        if isinstance(line, bytes) and (match := _VANISHED.match(line)):
            uids.extend(expand_uid_set(match.group(1).decode()))
    return uids


def parse_search(lines: Iterable[bytes | bytearray]) -> list[int]:
    """`SEARCH` (or ESEARCH ALL) results as a list of numbers."""
    numbers: list[int] = []
    for line in lines:
        if not isinstance(line, bytes):
            continue
        upper = line.upper().removeprefix(b"* ")
        if upper.startswith(b"SEARCH"):
            numbers.extend(int(n) for n in line.split()[1:] if n.isdigit())
        elif upper.startswith(b"ESEARCH") and b" ALL " in upper:
            numbers.extend(expand_uid_set(line.split(b" ALL ", 1)[1].split()[0].decode()))
    return numbers


def expand_uid_set(text: str, *, limit: int = 10_000_000) -> list[int]:
    """`"1:3,7,9:10"` as `[1, 2, 3, 7, 9, 10]`; `*` and absurd ranges are refused."""
    uids: list[int] = []
    for part in text.split(","):
        if not part:
            continue
        low, _, high = part.partition(":")
        if not low.isdigit() or (high and not high.isdigit()):
            raise ImapProtocolError(f"bad UID set {text[:60]!r}")
        start, end = int(low), int(high or low)
        if start > end:
            start, end = end, start
        if end - start > limit - len(uids):
            raise ImapProtocolError("UID set too large")
        uids.extend(range(start, end + 1))
    return uids


def compress_uid_set(uids: Iterable[int]) -> str:
    """Sorted UIDs as the shortest IMAP set: `[1, 2, 3, 7]` → `"1:3,7"`."""
    ordered = sorted(set(uids))
    if not ordered:
        raise ValueError("empty UID set")
    parts: list[str] = []
    start = previous = ordered[0]
    for uid in ordered[1:]:
        if uid == previous + 1:
            previous = uid
            continue
        parts.append(f"{start}:{previous}" if previous != start else str(start))
        start = previous = uid
    parts.append(f"{start}:{previous}" if previous != start else str(start))
    return ",".join(parts)


def tokens(segments: Sequence[bytes | bytearray]) -> list[object]:
    """Public access to the tokenizer (BODYSTRUCTURE trees, tests)."""
    return _tokens(segments)


__all__ = [
    "FetchedItem",
    "ListedMailbox",
    "MailboxStatus",
    "SelectedState",
    "compress_uid_set",
    "expand_uid_set",
    "imap_date",
    "parse_fetch",
    "parse_internal_date",
    "parse_list",
    "parse_search",
    "parse_select",
    "parse_status",
    "parse_vanished",
    "to_sexpr",
    "tokens",
]


def to_sexpr(value: object) -> str:
    """Render tokens back as IMAP text (for BODYSTRUCTURE handed to the MIME layer)."""
    if value is None:
        return "NIL"
    if isinstance(value, list):
        return "(" + " ".join(to_sexpr(item) for item in value) + ")"
    if isinstance(value, bytes | bytearray):
        value = value.decode("utf-8", errors="replace")
    text = str(value)
    if text.isdigit():
        return text
    # Every BODYSTRUCTURE field other than numbers is a string, so quoting is exact.
    return (
        '"'
        + text.replace("\\", "\\\\").replace('"', '\\"').replace("\r", " ").replace("\n", " ")
        + '"'
    )


_COPYUID = re.compile(rb"\[COPYUID (\d+) ([0-9:,]+) ([0-9:,]+)\]", re.IGNORECASE)
_APPENDUID = re.compile(rb"\[APPENDUID (\d+) (\d+)\]", re.IGNORECASE)


def parse_copyuid(lines: Iterable[bytes | bytearray]) -> tuple[int, dict[int, int]] | None:
    """RFC 4315 COPYUID of a COPY or MOVE answer: (destination UIDVALIDITY, old -> new UID).

    MOVE reports it in an untagged OK, COPY in the tagged one; both lines are given.
    None when the server did not say (no UIDPLUS) or said something inconsistent.
    """
    for line in lines:
        match = _COPYUID.search(bytes(line))
        if match is None:
            continue
        try:
            sources = expand_uid_set(match.group(2).decode())
            targets = expand_uid_set(match.group(3).decode())
        except ImapProtocolError:
            return None
        if len(sources) != len(targets):
            return None
        return int(match.group(1)), dict(zip(sources, targets, strict=True))
    return None


def parse_appenduid(lines: Iterable[bytes | bytearray]) -> tuple[int, int] | None:
    """RFC 4315 APPENDUID of an APPEND answer: (UIDVALIDITY, UID), or None."""
    for line in lines:
        match = _APPENDUID.search(bytes(line))
        if match is not None:
            return int(match.group(1)), int(match.group(2))
    return None
