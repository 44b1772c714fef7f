"""Parsing off the event loop: a process pool around the pure `mailsvc.mime` parser.

Parsing, not the network, sets the sync speed (DESIGN.md), so the pool has a process
per core. Workers are started with `spawn`: forking a process that runs an event
loop, threads and open sockets is not safe.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

from mailsvc.mime import ParsedMessage, parse_message
from mailsvc.mime.bodystructure import parse_bodystructure, parse_partial


@dataclass(frozen=True, slots=True)
class PartialSource:
    """A message above the size cap: header block, BODYSTRUCTURE text, text sections."""

    header: bytes
    bodystructure: str
    text_sections: dict[str, bytes]


def _parse_one(source: bytes | PartialSource, max_text_chars: int) -> ParsedMessage:
    if isinstance(source, PartialSource):
        structure = parse_bodystructure(source.bodystructure)
        return parse_partial(source.header, structure, source.text_sections)
    return parse_message(source, max_text_chars=max_text_chars)


def _parse_chunk(
    sources: Sequence[bytes | PartialSource], max_text_chars: int
) -> list[ParsedMessage]:
    return [_parse_one(source, max_text_chars) for source in sources]


class ParserPool:
    """Parses batches of messages in worker processes, in order."""

    def __init__(self, *, processes: int | None = None, max_text_chars: int = 1_000_000) -> None:
        self._processes = max(1, processes or os.cpu_count() or 1)
        self._max_text_chars = max_text_chars
        self._executor: ProcessPoolExecutor | None = None

    def _pool(self) -> ProcessPoolExecutor:
        if self._executor is None:
            self._executor = ProcessPoolExecutor(
                max_workers=self._processes, mp_context=multiprocessing.get_context("spawn")
            )
        return self._executor

    async def parse(self, sources: Sequence[bytes | PartialSource]) -> list[ParsedMessage]:
        """Parse `sources`, spread over the workers in contiguous chunks."""
        if not sources:
            return []
        loop = asyncio.get_running_loop()
        pool = self._pool()
        size = max(1, -(-len(sources) // self._processes))
        chunks = [sources[i : i + size] for i in range(0, len(sources), size)]
        results = await asyncio.gather(
            *(
                loop.run_in_executor(pool, _parse_chunk, chunk, self._max_text_chars)
                for chunk in chunks
            )
        )
        return [parsed for chunk in results for parsed in chunk]

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
            self._executor = None
