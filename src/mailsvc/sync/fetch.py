"""Fetching new messages from a selected mailbox, one batch at a time.

A message up to SYNC_MAX_MESSAGE_BYTES comes whole (BODY.PEEK[]); a larger one comes
as its header, BODYSTRUCTURE and text parts only, so one huge attachment never has to
fit in memory (the raw source is streamed from the server on demand instead). Gmail
(X-GM-EXT-1) is asked for each message's id, thread and labels too.

A server that sends more than it was asked for cannot make these fetches buffer it
(`mailsvc.imap.protocol`): a literal above `literal_cap` drops the connection before
anything is allocated, and so does an answer above what was asked for (twice the
RFC822.SIZE the server gave, and room for one literal at the cap). The header and
text parts of a message above the cap are asked for as much as the parser reads of
them only.
"""

from __future__ import annotations

from contextlib import AbstractContextManager

from mailsvc.imap import gmail, uids, wire
from mailsvc.imap.connection import ImapConnection
from mailsvc.imap.protocol import ANSWER_LINE_OVERHEAD, answer_limits
from mailsvc.mime.bodystructure import parse_bodystructure, text_sections
from mailsvc.mime.parts import MAX_HEADER_BYTES
from mailsvc.sync import plan as planning
from mailsvc.sync.parser import Fetched, PartialSource

_MESSAGE_ITEMS = "UID FLAGS INTERNALDATE RFC822.SIZE"

# The parser reads a header up to MAX_HEADER_BYTES; the rest would be buffered unread.
_HEADER_BYTES = MAX_HEADER_BYTES + 2
TEXT_PART_BYTES = 6 * 1_000_000 + 1024
"""What of a text part of a message above the cap is fetched: as much as
`parse_partial` reads (its `max_text_chars` of text, 6 bytes a character at most)."""


def literal_cap(max_message_bytes: int) -> int:
    """The largest literal a fetch of new messages buffers. A message is asked for
    whole up to `max_message_bytes` by its RFC822.SIZE, which some servers report a
    little off; twice that, and room for a text part (`TEXT_PART_BYTES`)."""
    return max(2 * max_message_bytes, TEXT_PART_BYTES) + 1024 * 1024


# Per message of a FETCH answer beyond its literals: its lines and what they cost.
_ITEM_ALLOWANCE = 16 * 1024 + 4 * ANSWER_LINE_OVERHEAD


def _limits(
    max_message_bytes: int, asked_bytes: int, messages: int
) -> AbstractContextManager[None]:
    """The limits of a fetch from `messages` whose RFC822.SIZEs add up to `asked_bytes`."""
    literal = literal_cap(max_message_bytes)
    answer = 2 * asked_bytes + literal + messages * _ITEM_ALLOWANCE
    return answer_limits(max_literal_bytes=literal, max_answer_bytes=answer)


def _message_items(connection: ImapConnection) -> str:
    if connection.has(gmail.CAPABILITY):
        return f"{_MESSAGE_ITEMS} {gmail.FETCH_ITEMS}"
    return _MESSAGE_ITEMS


async def fetch_batch(
    connection: ImapConnection, batch: list[planning.Candidate], *, max_message_bytes: int
) -> list[tuple[wire.FetchedItem, Fetched]]:
    """One batch of new messages, whole, or in parts for those above the size cap."""
    cap = max_message_bytes
    small = [c for c in batch if c.size <= cap]
    large = [c for c in batch if c.size > cap]
    fetched: list[tuple[wire.FetchedItem, Fetched]] = []
    if small:
        message_items = _message_items(connection)
        with _limits(cap, sum(c.size for c in small), len(small)):
            items, _ = await connection.uid_fetch(
                uids.compress_uid_set([c.uid for c in small]),
                f"{message_items} MODSEQ BODY.PEEK[]"
                if connection.has("CONDSTORE") else f"{message_items} BODY.PEEK[]"
            )  # fmt: skip
        fetched += [(item, item.body or b"") for item in items if item.uid is not None]
    for candidate in large:
        # Whatever is asked for of a message (header, structure, text parts) is
        # within its size.
        with _limits(cap, candidate.size, 1):
            fetched += await _fetch_partial(connection, candidate.uid)
    fetched.sort(key=lambda pair: pair[0].uid or 0)
    return fetched


async def _fetch_partial(
    connection: ImapConnection, uid: int
) -> list[tuple[wire.FetchedItem, Fetched]]:
    """A message above the size cap: header, structure and text parts only."""
    items, _ = await connection.uid_fetch(
        str(uid), f"{_message_items(connection)} BODY.PEEK[HEADER]<0.{_HEADER_BYTES}> BODYSTRUCTURE"
    )
    if not items:
        return []
    item = items[0]
    structure_text = wire.to_sexpr(item.bodystructure) if item.bodystructure else ""
    structure = parse_bodystructure(structure_text) if structure_text else None
    wanted = [section for section, *_ in text_sections(structure)] if structure else []
    sections: dict[str, bytes | bytearray] = {}
    if wanted:
        parts = " ".join(f"BODY.PEEK[{section}]<0.{TEXT_PART_BYTES}>" for section in wanted)
        text_items, _ = await connection.uid_fetch(str(uid), f"UID {parts}")
        if text_items:
            sections = text_items[0].sections
    header = bytes(item.sections.get("HEADER", b""))
    return [(item, PartialSource(header, structure_text, sections))]
