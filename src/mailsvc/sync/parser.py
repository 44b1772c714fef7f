"""Parsing off the event loop, in worker processes, with a time limit per message.

Parsing, not the network, sets the sync speed (DESIGN.md), so the pool has a process
per core. Its workers are spawned processes that die with this one, even when it is
SIGKILLed (`kit.processes.die_with_parent`).

A parse is bounded, not merely expected to be fast: mail is hostile input, and one
message that makes a parser step slow (a pathological header, a deep or wide MIME
tree) must not stall its mailbox, or hold a parser process, for long. Before each
message a worker writes its position in the chunk and the time it starts (system-wide
monotonic clock) into a small shared array; the pool reads it to know each message's
deadline, `timeout` after its start. A worker past a deadline is SIGKILLed (the only
stop that works inside C code, such as a regular expression match) and replaced at
once, so the pool keeps its capacity. The message it was on is stored from its header
alone (`mailsvc.mime.fallback`: bounded in size and linear), with a note saying the
parse was cut off; the others of its chunk that were not yet reported go to the new
worker. A worker that dies by itself (a crash, the OOM killer) is handled the same
way, with a note saying so.

Protocol, over one duplex pipe per worker: the pool sends a chunk (a list of
sources; in a thread, since a big one would block the event loop until the worker
has read it); the worker answers `"begin"` once it holds the chunk, then lists of
`("parsed", message, seconds)` or `("failed", error name, seconds)`, in order, a list
at most every `REPORT_SECONDS` and at the end of the chunk: one reply per message
would cost the syncing process a wake-up per message.

Workers are started from the thread of the event loop that calls `parse`: the kernel
sends the parent-death signal when the *thread* that started a child ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile
import time
from collections.abc import MutableSequence, Sequence
from dataclasses import dataclass
from multiprocessing import get_context
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

from mailsvc.kit.processes import die_with_parent
from mailsvc.mime import ParsedMessage, parse_message
from mailsvc.mime.bodystructure import parse_bodystructure, parse_partial
from mailsvc.mime.fallback import MAX_HEADER_BYTES, parse_header_only

# Messages at least this large reach the parser through a temporary file instead of the
# pipe: pickling would hold one more copy of the message in the sync process.
SPOOL_BYTES = 4 * 1024 * 1024
DEFAULT_TIMEOUT_SECONDS = 1.0
# A new worker imports the parser before it reads its first chunk; that is not parsing
# and is not held to the per-message limit, only to this (a machine under load can be
# slow to start a Python process; one that never starts is an error).
STARTUP_SECONDS = 60.0
REPORT_SECONDS = 0.05
_CLOSE_SECONDS = 5.0
# The shared array: [position in the chunk of the message being parsed, its start].
_POSITION, _STARTED = 0, 1


RawMessage = bytes | bytearray
"""A raw message as fetched: literals stay the buffer they were read into."""


@dataclass(frozen=True, slots=True)
class SpooledSource:
    """A large raw message waiting in a temporary file; the pool deletes the file once
    its batch is parsed (a message may be sent to a second worker)."""

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


@dataclass(frozen=True, slots=True)
class ParseOutcome:
    """One message's parse: the result, its wall time and whether it was cut off.

    `seconds` is measured by the worker around the parse; for a message cut off (or
    whose worker died) it is the time from the start of its parse until the kill.
    """

    message: ParsedMessage
    seconds: float
    cut_off: bool


class ParserUnavailable(RuntimeError):
    """A parser process could not be started (or died before taking any work)."""


def _parse_one(source: Source, max_text_chars: int) -> ParsedMessage:
    if isinstance(source, SpooledSource):
        raw = Path(source.path).read_bytes()
        return parse_message(raw, max_text_chars=max_text_chars)
    if isinstance(source, PartialSource):
        structure = parse_bodystructure(source.bodystructure)
        sections = {section: bytes(data) for section, data in source.text_sections.items()}
        return parse_partial(source.header, structure, sections)
    # Literals arrive as bytearrays (see sync/imap.py); the copy is made here, in the
    # worker process, not in the syncing one.
    return parse_message(bytes(source), max_text_chars=max_text_chars)


def _serve(
    connection: Connection, progress: MutableSequence[float], parent_pid: int, max_text_chars: int
) -> None:
    """A worker process: parse the chunks it is sent until told to stop (None)."""
    die_with_parent(parent_pid)
    while True:
        try:
            sources = connection.recv()
        except EOFError:
            return
        if sources is None:
            return
        replies: list[tuple[str, object, float]] = []
        reported = time.monotonic()
        for position, source in enumerate(sources):
            progress[_POSITION] = position
            progress[_STARTED] = time.monotonic()
            if position == 0:
                connection.send("begin")  # after the first start is written
            started = time.perf_counter()
            reply: tuple[str, object]
            try:
                reply = ("parsed", _parse_one(source, max_text_chars))
            except Exception as exc:  # reported, so the message is still stored
                reply = ("failed", type(exc).__name__)
            replies.append((*reply, time.perf_counter() - started))
            now = time.monotonic()
            if now - reported >= REPORT_SECONDS or position == len(sources) - 1:
                connection.send(replies)
                replies, reported = [], now


def _remove_spooled(sources: Sequence[Source]) -> None:
    for source in sources:
        if isinstance(source, SpooledSource):
            Path(source.path).unlink(missing_ok=True)


def _write_temporary(data: bytes | bytearray) -> str:
    handle, path = tempfile.mkstemp(prefix="mailsvc-parse-", suffix=".eml")
    with os.fdopen(handle, "wb") as file:
        file.write(data)
    return path


def _header_of(source: Fetched) -> bytes:
    if isinstance(source, PartialSource):
        return source.header
    return bytes(source[:MAX_HEADER_BYTES])


class _Worker:
    """One parser process, the parent's end of its pipe and its progress array."""

    def __init__(self, max_text_chars: int) -> None:
        context = get_context("spawn")
        self.connection, child = context.Pipe(duplex=True)
        self.progress: MutableSequence[float] = context.RawArray("d", 2)
        self.process: BaseProcess = context.Process(
            target=_serve,
            args=(child, self.progress, os.getpid(), max_text_chars),
            name="mailsvc-parser",
            daemon=True,
        )
        self.process.start()
        child.close()

    @property
    def pid(self) -> int | None:
        return self.process.pid

    async def receive(self, deadline: float) -> Any:
        """The worker's next reply; TimeoutError past `deadline` (`time.monotonic()`),
        EOFError or OSError if the worker died."""
        connection = self.connection
        if not connection.poll():
            loop = asyncio.get_running_loop()
            readable: asyncio.Future[None] = loop.create_future()
            descriptor = connection.fileno()
            loop.add_reader(descriptor, _resolve, readable)
            try:
                async with asyncio.timeout(max(0.0, deadline - time.monotonic())):
                    await readable
            finally:
                loop.remove_reader(descriptor)
        return connection.recv()

    async def receive_replies(self, limit_seconds: float) -> Any:
        """The next list of replies, waiting as long as the message being parsed is
        within `limit_seconds` of its start; TimeoutError once it is not."""
        while True:
            deadline = self.progress[_STARTED] + limit_seconds
            try:
                return await self.receive(deadline)
            except TimeoutError:
                if time.monotonic() >= self.progress[_STARTED] + limit_seconds:
                    raise
                # The worker went on to a later message meanwhile: wait for that one.

    def kill(self) -> int | None:
        """SIGKILL the process and reap it; its exit code (None if it would not die)."""
        with contextlib.suppress(OSError):
            self.process.kill()
        self.process.join(_CLOSE_SECONDS)
        self.connection.close()
        return self.process.exitcode

    def stop(self) -> None:
        """Ask the process to finish; kill it if it does not within a few seconds."""
        with contextlib.suppress(OSError):
            self.connection.send(None)
        self.process.join(_CLOSE_SECONDS)
        if self.process.exitcode is None:
            self.kill()
        self.connection.close()


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class ParserPool:
    """Parses batches of messages in worker processes, in order, each within
    `timeout_seconds` (see the module docstring for what happens past it)."""

    def __init__(
        self,
        *,
        processes: int | None = None,
        max_text_chars: int = 1_000_000,
        timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS,
    ) -> None:
        self._processes = max(1, processes or os.cpu_count() or 1)
        self._max_text_chars = max_text_chars
        self._timeout = timeout_seconds
        # Idle slots; a slot without a process (None) starts one when checked out.
        self._idle: list[_Worker | None] = [None] * self._processes
        self._busy: set[_Worker] = set()
        self._waiters: list[asyncio.Future[None]] = []
        self.replaced = 0
        """How many workers were killed (over time) or found dead, and replaced."""

    def worker_pids(self) -> list[int]:
        """The process ids of the started workers (idle or busy)."""
        workers = [worker for worker in self._idle if worker is not None] + list(self._busy)
        return [pid for worker in workers if (pid := worker.pid) is not None]

    async def parse(self, sources: Sequence[Fetched]) -> list[ParsedMessage]:
        """Parse `sources`, spread over the workers in contiguous chunks."""
        return [outcome.message for outcome in await self.parse_outcomes(sources)]

    async def parse_outcomes(self, sources: Sequence[Fetched]) -> list[ParseOutcome]:
        """`parse`, with each message's parse time and whether it was cut off."""
        if not sources:
            return []
        shipped = [await self._spool(source) for source in sources]
        size = max(1, -(-len(shipped) // self._processes))
        chunks = [
            list(zip(shipped[i : i + size], sources[i : i + size], strict=True))
            for i in range(0, len(shipped), size)
        ]
        try:
            results = await asyncio.gather(*(self._run_chunk(chunk) for chunk in chunks))
        finally:
            _remove_spooled(shipped)
        return [outcome for chunk in results for outcome in chunk]

    async def _run_chunk(self, chunk: list[tuple[Source, Fetched]]) -> list[ParseOutcome]:
        worker = await self._checkout()
        outcomes: list[ParseOutcome | None] = [None] * len(chunk)
        todo = list(range(len(chunk)))
        try:
            while todo:
                worker, todo = await self._parse_until_cut_off(worker, chunk, todo, outcomes)
        except BaseException:
            # Cancelled or failed mid-chunk: the worker's state is unknown.
            self._busy.discard(worker)
            await asyncio.to_thread(worker.kill)
            self._checkin(None)
            raise
        self._checkin(worker)
        return [outcome for outcome in outcomes if outcome is not None]

    async def _parse_until_cut_off(
        self,
        worker: _Worker,
        chunk: list[tuple[Source, Fetched]],
        todo: list[int],
        outcomes: list[ParseOutcome | None],
    ) -> tuple[_Worker, list[int]]:
        """Have `worker` parse the messages `todo` (indexes into `chunk`) into
        `outcomes`. Returns the worker to go on with (a new one if this one was killed
        or died) and what is left to do (nothing, unless it was)."""
        try:
            sources = [chunk[index][0] for index in todo]
            await asyncio.to_thread(worker.connection.send, sources)
            await worker.receive(time.monotonic() + STARTUP_SECONDS)
        except (TimeoutError, EOFError, OSError) as exc:
            raise ParserUnavailable(f"parser process {worker.pid} took no work") from exc
        done = 0
        while done < len(todo):
            try:
                replies = await worker.receive_replies(self._timeout)
            except (TimeoutError, EOFError, OSError) as exc:
                seconds = time.monotonic() - worker.progress[_STARTED]
                code = await asyncio.to_thread(worker.kill)
                # The process is gone: its progress no longer moves.
                position = max(done, int(worker.progress[_POSITION]))
                if isinstance(exc, TimeoutError):
                    note = (
                        f"parsing took longer than {self._timeout:g} s and was cut off;"
                        " only the header was read"
                    )
                else:
                    note = f"the parser process died (exit code {code}); only the header was read"
                header = _header_of(chunk[todo[position]][1])
                message = parse_header_only(header, note=note)
                outcomes[todo[position]] = ParseOutcome(message, seconds, cut_off=True)
                # Those before it were parsed, but their replies died with the process.
                return self._replacement(worker), todo[done:position] + todo[position + 1 :]
            for kind, payload, seconds in replies:
                index = todo[done]
                if kind == "parsed":
                    assert isinstance(payload, ParsedMessage)
                    message = payload
                else:
                    note = f"the parser failed ({payload}); only the header was read"
                    message = parse_header_only(_header_of(chunk[index][1]), note=note)
                outcomes[index] = ParseOutcome(message, seconds, cut_off=False)
                done += 1
        return worker, []

    def _replacement(self, dead: _Worker) -> _Worker:
        """A new worker in the place of `dead` (killed or died), so capacity is kept."""
        self._busy.discard(dead)
        self.replaced += 1
        worker = _Worker(self._max_text_chars)
        self._busy.add(worker)
        return worker

    async def _checkout(self) -> _Worker:
        while not self._idle:
            waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            finally:
                with contextlib.suppress(ValueError):
                    self._waiters.remove(waiter)
        worker = self._idle.pop()
        if worker is None or not worker.process.is_alive():
            if worker is not None:
                self.replaced += 1
                await asyncio.to_thread(worker.kill)
            worker = _Worker(self._max_text_chars)
        self._busy.add(worker)
        return worker

    def _checkin(self, worker: _Worker | None) -> None:
        if worker is not None:
            self._busy.discard(worker)
        self._idle.append(worker)
        for waiter in self._waiters:
            if not waiter.done():
                with contextlib.suppress(RuntimeError):  # its event loop is gone
                    waiter.set_result(None)
                    return

    @staticmethod
    async def _spool(
        source: Fetched,
    ) -> Source:
        if not isinstance(source, bytes | bytearray) or len(source) < SPOOL_BYTES:
            return source
        return SpooledSource(await asyncio.to_thread(_write_temporary, source))

    def close(self) -> None:
        """Stop the workers (waiting a few seconds for each) and forget them."""
        workers = [worker for worker in self._idle if worker is not None] + list(self._busy)
        self._idle = [None] * self._processes
        self._busy.clear()
        for worker in workers:
            worker.stop()
