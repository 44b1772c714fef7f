"""Fetching new messages from a selected mailbox, one batch at a time.

A message up to SYNC_MAX_MESSAGE_BYTES comes whole (BODY.PEEK[]); a larger one comes
as its header, BODYSTRUCTURE and text parts only, so one huge attachment never has to
fit in memory (the raw source is streamed from the server on demand instead). Gmail
(X-GM-EXT-1) is asked for each message's id, thread and labels too.
"""

from __future__ import annotations

from mailsvc.imap import gmail, uids, wire
from mailsvc.imap.connection import ImapConnection
from mailsvc.mime.bodystructure import parse_bodystructure, text_sections
from mailsvc.sync import plan as planning
from mailsvc.sync.parser import Fetched, PartialSource

_MESSAGE_ITEMS = "UID FLAGS INTERNALDATE RFC822.SIZE"


def _message_items(connection: ImapConnection) -> str:
    if connection.has(gmail.CAPABILITY):
        return f"{_MESSAGE_ITEMS} {gmail.FETCH_ITEMS}"
    return _MESSAGE_ITEMS


async def fetch_batch(
    connection: ImapConnection, batch: list[planning.Candidate], *, max_message_bytes: int
) -> list[tuple[wire.FetchedItem, Fetched]]:
    """One batch of new messages, whole, or in parts for those above the size cap."""
    cap = max_message_bytes
    small = [c.uid for c in batch if c.size <= cap]
    large = [c.uid for c in batch if c.size > cap]
    fetched: list[tuple[wire.FetchedItem, Fetched]] = []
    if small:
        message_items = _message_items(connection)
        items, _ = await connection.uid_fetch(
            uids.compress_uid_set(small), f"{message_items} MODSEQ BODY.PEEK[]"
            if connection.has("CONDSTORE") else f"{message_items} BODY.PEEK[]"
        )  # fmt: skip
        fetched += [(item, item.body or b"") for item in items if item.uid is not None]
    for uid in large:
        fetched += await _fetch_partial(connection, uid)
    fetched.sort(key=lambda pair: pair[0].uid or 0)
    return fetched


async def _fetch_partial(
    connection: ImapConnection, uid: int
) -> list[tuple[wire.FetchedItem, Fetched]]:
    """A message above the size cap: header, structure and text parts only."""
    items, _ = await connection.uid_fetch(
        str(uid), f"{_message_items(connection)} BODY.PEEK[HEADER] BODYSTRUCTURE"
    )
    if not items:
        return []
    item = items[0]
    structure_text = wire.to_sexpr(item.bodystructure) if item.bodystructure else ""
    structure = parse_bodystructure(structure_text) if structure_text else None
    wanted = [section for section, *_ in text_sections(structure)] if structure else []
    sections: dict[str, bytes | bytearray] = {}
    if wanted:
        parts = " ".join(f"BODY.PEEK[{section}]" for section in wanted)
        text_items, _ = await connection.uid_fetch(str(uid), f"UID {parts}")
        if text_items:
            sections = text_items[0].sections
    header = bytes(item.sections.get("HEADER", b""))
    return [(item, PartialSource(header, structure_text, sections))]
