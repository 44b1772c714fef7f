"""UID sets (RFC 3501 sequence-set syntax) and the UIDPLUS answers that carry them (RFC 4315).

Pure; hostile sets (`*`, empty parts, absurd ranges, non-ASCII digits) are refused
with `ImapProtocolError` rather than read as something else.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from mailsvc.imap.errors import ImapProtocolError


def uid_set_of(raw: bytes, source: str) -> list[int]:
    """The UID set of a `source` response; a missing or unreadable one is a protocol error."""
    if not raw:
        raise ImapProtocolError(f"no UID set in {source}")
    try:
        return expand_uid_set(raw.decode("ascii", "replace"))
    except ImapProtocolError as exc:
        raise ImapProtocolError(f"{exc} in {source}") from exc


_UID_RANGE = re.compile(r"([0-9]+)(?::([0-9]+))?")


def expand_uid_set(text: str, *, limit: int = 10_000_000) -> list[int]:
    """`"1:3,7,9:10"` as `[1, 2, 3, 7, 9, 10]`; `*`, empty parts and absurd ranges are
    refused."""
    uids: list[int] = []
    for part in text.split(","):
        match = _UID_RANGE.fullmatch(part)
        if match is None:
            raise ImapProtocolError(f"bad UID set {text[:60]!r}")
        low, high = match.groups()
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
