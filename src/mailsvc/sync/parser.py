"""Parsing off the event loop: a process pool around the pure `mailsvc.mime` parser.

Parsing, not the network, sets the sync speed (DESIGN.md), so the pool has a process
per core. The pool comes from `kit.processes`: spawned workers that die with this
process, even when it is SIGKILLed.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from mailsvc.kit.processes import orphan_free_pool
from mailsvc.mime import ParsedMessage, parse_message
from mailsvc.mime.bodystructure import parse_bodystructure, parse_partial

# Messages at least this large reach the parser through a temporary file instead of the
# executor's pipe: pickling would hold one more copy of the message in the sync process.
SPOOL_BYTES = 4 * 1024 * 1024


RawMessage = bytes | bytearray
"""A raw message as fetched: literals stay the buffer they were read into."""


@dataclass(frozen=True, slots=True)
class SpooledSource:
    """A large raw message waiting in a temporary file; the parser deletes the file."""

    path: str


@dataclass(frozen=True, slots=True)
class PartialSource:
    """A message above the size cap: header block, BODYSTRUCTURE text, text sections."""

    header: bytes
    bodystructure: str
    text_sections: dict[str, bytes | bytearray]


Fetched = RawMessage | PartialSource
"""What the sync engine hands to `ParserPool.parse`."""
Source = Fetched | SpooledSource


def _parse_one(source: Source, max_text_chars: int) -> ParsedMessage:
    if isinstance(source, SpooledSource):
        path = Path(source.path)
        try:
            raw = path.read_bytes()
        finally:
            path.unlink(missing_ok=True)
        return parse_message(raw, max_text_chars=max_text_chars)
    if isinstance(source, PartialSource):
        structure = parse_bodystructure(source.bodystructure)
        sections = {section: bytes(data) for section, data in source.text_sections.items()}
        return parse_partial(source.header, structure, sections)
    # Literals arrive as bytearrays (see sync/imap.py); the copy is made here, in the
    # worker process, not in the syncing one.
    return parse_message(bytes(source), max_text_chars=max_text_chars)


def _parse_chunk(sources: Sequence[Source], max_text_chars: int) -> list[ParsedMessage]:
    return [_parse_one(source, max_text_chars) for source in sources]


def _remove_spooled(sources: Sequence[Source]) -> None:
    for source in sources:
        if isinstance(source, SpooledSource):
            Path(source.path).unlink(missing_ok=True)


def _write_temporary(data: bytes | bytearray) -> str:
    handle, path = tempfile.mkstemp(prefix="mailsvc-parse-", suffix=".eml")
    with os.fdopen(handle, "wb") as file:
        file.write(data)
    return path


class ParserPool:
    """Parses batches of messages in worker processes, in order."""

    def __init__(self, *, processes: int | None = None, max_text_chars: int = 1_000_000) -> None:
        self._processes = max(1, processes or os.cpu_count() or 1)
        self._max_text_chars = max_text_chars
        self._executor: ProcessPoolExecutor | None = None

    def _pool(self) -> ProcessPoolExecutor:
        if self._executor is None:
            self._executor = orphan_free_pool(max_workers=self._processes)
        return self._executor

    async def parse(self, sources: Sequence[Fetched]) -> list[ParsedMessage]:
        """Parse `sources`, spread over the workers in contiguous chunks."""
        if not sources:
            return []
        loop = asyncio.get_running_loop()
        pool = self._pool()
        shipped = [await self._spool(source) for source in sources]
        size = max(1, -(-len(shipped) // self._processes))
        chunks = [shipped[i : i + size] for i in range(0, len(shipped), size)]
        try:
            results = await asyncio.gather(
                *(
                    loop.run_in_executor(pool, _parse_chunk, chunk, self._max_text_chars)
                    for chunk in chunks
                )
            )
        finally:
            # The parser deletes what it read; this covers a chunk that never ran.
            _remove_spooled(shipped)
        return [parsed for chunk in results for parsed in chunk]

    @staticmethod
    async def _spool(
        source: Fetched,
    ) -> Source:
        if not isinstance(source, bytes | bytearray) or len(source) < SPOOL_BYTES:
            return source
        return SpooledSource(await asyncio.to_thread(_write_temporary, source))

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
            self._executor = None
