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
from datetime import datetime

from mailsvc.imap import names
from mailsvc.imap.dates import imap_date, parse_internal_date
from mailsvc.imap.errors import ImapProtocolError
from mailsvc.imap.tokens import Tokenizer, to_sexpr, tokenize, tokens
from mailsvc.imap.uids import uid_set_of


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
    # Gmail (X-GM-EXT-1): the message's stable id, its thread and its labels. Labels
    # are None when the response did not carry them (or carried garbage), () when
    # the message has none.
    gm_msgid: int | None = None
    gm_thrid: int | None = None
    gm_labels: tuple[str, ...] | None = None


# ASCII digits only: `str.isdigit` also accepts "²", on which `int()` raises, and
# "٣" (Arabic-Indic three), which `int()` reads as 3.
_NUMBER = re.compile(r"[0-9]+")


# Every number of IMAP fits in 64 bits: 20 digits. Longer ones are garbage, and
# past 4,300 digits `int()` raises ValueError instead of reading them.
_MAX_DIGITS = 20


def _as_int(value: object) -> int | None:
    """`value` as a number if it is an atom of ASCII digits, else None."""
    if isinstance(value, str) and len(value) <= _MAX_DIGITS and _NUMBER.fullmatch(value):
        return int(value)
    return None


# Gmail's ids are unsigned 64-bit numbers; they are stored as PostgreSQL bigint, so
# one beyond its range (none Gmail has issued: they grow with time and are near 2**60)
# is read as absent rather than failing the whole batch's INSERT.
_MAX_GMAIL_ID = 2**63 - 1


def _gmail_id(value: object) -> int | None:
    number = _as_int(value)
    return number if number is not None and 0 < number <= _MAX_GMAIL_ID else None


# Gmail allows 225 characters in a label name; a longer one is not Gmail's, and would
# only cost index space. More labels than this on one message is not Gmail's either.
MAX_LABEL_CHARS = 1_000
MAX_LABELS = 1_000


def _gmail_labels(value: object) -> tuple[str, ...] | None:
    """An `X-GM-LABELS` list as label names, sorted and without duplicates.

    System labels keep their backslash (`\\Inbox`, `\\Important`); user labels are
    decoded from modified UTF-7, whether they came as atoms, quoted strings or
    literals. Entries that cannot be labels (NIL, nested lists, text with NUL,
    which PostgreSQL cannot store, or over `MAX_LABEL_CHARS`) are left out; a value
    that is not a list at all is None, as if the item had not been sent.
    """
    if not isinstance(value, list):
        return None
    labels: set[str] = set()
    for entry in value[:MAX_LABELS]:
        # Checked before decoding, so a huge entry costs nothing: a character takes
        # at most 4 bytes of UTF-8, or 6 characters of modified UTF-7.
        if not isinstance(entry, str | bytes | bytearray) or len(entry) > 6 * MAX_LABEL_CHARS:
            continue
        if not isinstance(entry, str):
            entry = bytes(entry).decode("utf-8", "replace")
        label = entry if entry.startswith("\\") else names.decode(entry)
        if label and len(label) <= MAX_LABEL_CHARS and "\x00" not in label:
            labels.add(label)
    return tuple(sorted(labels))


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
            if item.uid is None:
                # Skipped for want of a UID, the message would never be fetched:
                # the mailbox's `uidnext` moves past it.
                raise ImapProtocolError(f"bad UID in FETCH response {sequence}")
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
            item.gm_thrid = _gmail_id(value)
        elif key == "X-GM-MSGID":
            item.gm_msgid = _gmail_id(value)
        elif key == "X-GM-LABELS":
            item.gm_labels = _gmail_labels(value)
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


# Any first word, so that a malformed sequence number is refused rather than the
# response skipped (and its message lost).
_FETCH_START = re.compile(rb"^(?:\* )?(\S+) FETCH \(", re.IGNORECASE)


def parse_fetch(lines: Iterable[bytes | bytearray]) -> list[FetchedItem]:
    """Every FETCH response among `lines` (other untagged lines are skipped).

    Several responses for one UID (RFC 3501 7.4.2 lets a server split a message's
    data, or send it twice) are merged into the first (`_merge`): one item per UID,
    whatever the server repeated.
    A response whose framing does not hold (see `_fetch_attributes`) is refused.
    """
    items: list[FetchedItem] = []
    by_uid: dict[int, FetchedItem] = {}
    for group in _split_responses(lines):
        first = group[0]
        assert isinstance(first, bytes)
        match = _FETCH_START.match(first)
        assert match is not None
        sequence = _as_int(match.group(1).decode("ascii", "replace"))
        if sequence is None:
            raise ImapProtocolError("bad sequence number in FETCH response")
        rest: list[bytes | bytearray] = [first[match.end() - 1 :], *group[1:]]
        item = _fetch_item(sequence, _fetch_attributes(sequence, rest))
        earlier = by_uid.get(item.uid) if item.uid is not None else None
        if earlier is not None:
            _merge(earlier, item)
            continue
        if item.uid is not None:
            by_uid[item.uid] = item
        items.append(item)
    return items


def _fetch_attributes(sequence: int, segments: list[bytes | bytearray]) -> list[object]:
    """The `(...)` list of one FETCH response; it ends with the first line that does
    not announce a literal, and the segments after it are other replies.

    Refused (`ImapProtocolError`) when a literal is not followed by the rest of its
    line (SP or `)`), or when a response with literals does not close: a literal
    shorter than announced leaves message text where the response should go on, and
    the body read would be cut short without a word.
    """
    tokenizer = Tokenizer()
    had_literal = False
    for index, segment in enumerate(segments):
        literal = isinstance(segment, bytearray)
        if index and not literal and not segment.startswith((b" ", b")")):
            raise ImapProtocolError(
                f"FETCH response {sequence}: text after a literal where SP or ')' belongs "
                "(a literal shorter than announced?)"
            )
        tokenizer.feed(segment)
        had_literal = had_literal or literal
        if not literal and not (
            index + 1 < len(segments) and isinstance(segments[index + 1], bytearray)
        ):
            break
    if had_literal and tokenizer.depth:
        raise ImapProtocolError(f"FETCH response {sequence} does not close after its literal")
    return next((t for t in tokenizer.root if isinstance(t, list)), [])


def _merge(into: FetchedItem, later: FetchedItem) -> None:
    """Fold a later response for the same UID into `into` (see `parse_fetch`).

    Flags, MODSEQ and labels change: the later value wins. A message's content,
    date, size and ids never do: two different values are a lie, and refused.
    """
    for name in _CHANGING_ITEMS:
        value = getattr(later, name)
        if value is not None:
            setattr(into, name, value)
    for name in _FIXED_ITEMS:
        value, earlier = getattr(later, name), getattr(into, name)
        if value is not None and earlier is not None and value != earlier:
            raise ImapProtocolError(f"FETCH: two different {name} for UID {into.uid}")
        if value is not None:
            setattr(into, name, value)
    for section, payload in later.sections.items():
        if into.sections.setdefault(section, payload) != payload:
            raise ImapProtocolError(f"FETCH: two different BODY[{section}] for UID {into.uid}")


_CHANGING_ITEMS = ("flags", "modseq", "gm_labels")
_FIXED_ITEMS = ("internal_date", "size", "body", "bodystructure", "gm_msgid", "gm_thrid")


@dataclass(frozen=True, slots=True)
class ListedMailbox:
    """One `LIST` answer: decoded name, hierarchy delimiter and attributes."""

    name: str
    raw_name: str
    delimiter: str | None
    attributes: frozenset[str]


def parse_list(lines: Iterable[bytes | bytearray]) -> list[ListedMailbox]:
    """`LIST` responses, names decoded from modified UTF-7 (`names.decode_mailbox`:
    one that is not valid gets a stand-in that is listed but cannot be selected).
    A name listed twice counts once."""
    mailboxes: list[ListedMailbox] = []
    seen: set[str] = set()
    pending: list[bytes | bytearray] = []

    def flush() -> None:
        tokens = tokenize(pending)
        pending.clear()
        if len(tokens) < 3 or not isinstance(tokens[0], list):
            return
        attributes = frozenset(a for a in tokens[0] if isinstance(a, str))
        delimiter = tokens[1] if isinstance(tokens[1], str) else None
        raw = tokens[2]
        raw_name = raw.decode("utf-8", "replace") if isinstance(raw, bytes | bytearray) else raw
        if not isinstance(raw_name, str):
            return
        name = names.decode_mailbox(raw_name)
        if name in seen:
            return  # listed twice (or two stand-ins alike): the first one counts
        seen.add(name)
        mailboxes.append(ListedMailbox(name, raw_name, delimiter, attributes))

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


# Any argument and any count, so that a malformed one is refused: read as absent, a
# bad UIDVALIDITY would reset the mailbox (every stored message deleted and fetched
# again) and a bad EXISTS would hide new messages.
_RESP_CODE = re.compile(rb"\[(UIDVALIDITY|UIDNEXT|HIGHESTMODSEQ)(?: ([^\]]*))?\]", re.IGNORECASE)
_EXISTS = re.compile(rb"^(?:\* )?(\S+) EXISTS\s*$", re.IGNORECASE)
_VANISHED = re.compile(rb"^(?:\* )?VANISHED (?:\(EARLIER\) )?(\S+)", re.IGNORECASE)


def parse_select(lines: Sequence[bytes | bytearray]) -> SelectedState:
    state = SelectedState()
    for line in lines:
        if not isinstance(line, bytes):
            continue
        if match := _EXISTS.match(line):
            state.exists = _select_number(match.group(1), "EXISTS")
        elif match := _VANISHED.match(line):
            state.vanished.extend(uid_set_of(match.group(1), "VANISHED"))
        if b"NOMODSEQ" in line.upper():
            state.nomodseq = True
        for code, number in _RESP_CODE.findall(line):
            name = code.upper()
            value = _select_number(number, name.decode())
            if name == b"UIDVALIDITY":
                if value == 0:
                    # RFC 3501 2.3.1.1: a non-zero number. Read as absent, it would
                    # reset a synced mailbox (every row deleted and fetched again).
                    raise ImapProtocolError("UIDVALIDITY 0 in the SELECT response")
                state.uidvalidity = value
            elif name == b"UIDNEXT":
                state.uidnext = value
            else:
                state.highestmodseq = value
    state.changed = parse_fetch(lines)
    return state


def _select_number(raw: bytes, source: str) -> int:
    number = _as_int(raw.decode("ascii", "replace"))
    if number is None:
        raise ImapProtocolError(f"bad number in {source} of the SELECT response")
    return number


@dataclass(frozen=True, slots=True)
class MailboxStatus:
    """A mailbox's STATUS answer (absent items are None)."""

    messages: int | None = None
    uidnext: int | None = None
    uidvalidity: int | None = None
    unseen: int | None = None
    highestmodseq: int | None = None


_STATUS_ITEMS = ("MESSAGES", "UIDNEXT", "UIDVALIDITY", "UNSEEN", "HIGHESTMODSEQ")


def parse_status(lines: Sequence[bytes | bytearray]) -> dict[str, MailboxStatus]:
    """STATUS answers (from LIST-STATUS) by decoded mailbox name.

    An answer with a malformed number among the items read here is left out whole.
    """
    statuses: dict[str, MailboxStatus] = {}
    for line in lines:
        if not isinstance(line, bytes) or not line.upper().startswith((b"STATUS ", b"* STATUS ")):
            continue
        tokens = tokenize([line.removeprefix(b"* ")])
        if len(tokens) < 3 or not isinstance(tokens[2], list):
            continue
        name = tokens[1]
        if isinstance(name, bytes | bytearray):
            name = name.decode("utf-8", "replace")
        if not isinstance(name, str):
            continue
        values = tokens[2]
        fields = {
            str(values[i]).upper(): _as_int(values[i + 1]) if i + 1 < len(values) else None
            for i in range(0, len(values), 2)
        }
        if any(item in fields and fields[item] is None for item in _STATUS_ITEMS) or (
            fields.get("UIDVALIDITY") == 0
        ):
            # Read as absent, a bad HIGHESTMODSEQ would let the engine skip a mailbox
            # whose flags changed; a mailbox without a status is synced (and its
            # SELECT refuses a UIDVALIDITY of 0).
            continue
        statuses[names.decode_mailbox(name)] = MailboxStatus(
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
            uids.extend(uid_set_of(match.group(1), "VANISHED"))
    return uids


# Numbers, then RFC 7162's `(MODSEQ n)` when the search had a MODSEQ criterion.
_SEARCH = re.compile(rb"SEARCH((?: +[0-9]+)*)(?: +\(MODSEQ +[0-9]+\))? *")


def parse_search(lines: Iterable[bytes | bytearray]) -> list[int]:
    """`SEARCH` (or ESEARCH ALL) results as a list of numbers.

    A response that is not exactly that is refused: a number skipped or misread
    would make its message look expunged to the sync engine, which then deletes it.
    """
    numbers: list[int] = []
    for line in lines:
        if not isinstance(line, bytes):
            continue
        upper = line.upper().removeprefix(b"* ")
        words = upper.split()
        if words[:1] == [b"SEARCH"]:
            match = _SEARCH.fullmatch(upper)
            if match is None:
                shown = line.removeprefix(b"* ")[:60].decode("ascii", "replace")
                raise ImapProtocolError(f"bad SEARCH response {shown!r}")
            numbers.extend(int(number) for number in match.group(1).split())
        elif words[:1] == [b"ESEARCH"] and b"ALL" in words:
            after_all = words[words.index(b"ALL") + 1 :]
            numbers.extend(uid_set_of(after_all[0] if after_all else b"", "ESEARCH ALL"))
    return numbers


__all__ = [
    "FetchedItem",
    "ListedMailbox",
    "MailboxStatus",
    "SelectedState",
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
