"""aioimaplib's protocol and command classes, with two measured replacements.

- Its response reader recursed once per line, so a long response (a
  `UID FETCH 1:* (FLAGS)` of 5,000 messages) overflowed the stack and left the
  connection hanging. `_Protocol` reads iteratively, with the same semantics.
- It routes untagged responses by command name, dropping those of another
  name (the `STATUS` lines of `LIST ... RETURN (STATUS ...)`, an `EXISTS`
  during a `FETCH`). `RawCommand` runs as a "sync" command, which receives every
  untagged response, and `str()` of it is the wire text, so any command can be sent.

A server that lies cannot exhaust memory: a line is read up to `MAX_LINE_BYTES`;
a literal is buffered only up to the command's limit, and nothing is allocated from
an announced size above it; a command's whole answer (lines, literals and a
per-line overhead) is held up to its budget. Limit and budget are
`DEFAULT_MAX_LITERAL_BYTES` and `DEFAULT_MAX_ANSWER_BYTES` unless the command was
created inside `answer_limits` (the sync's message fetches). Going past any of them,
or an answer the reader cannot follow at all (a tagged reply nobody waits for),
drops the connection: every waiting command fails with `aioimaplib.Abort` carrying
the reason, which the connection reports as `ImapConnectError`.
"""

from __future__ import annotations

import asyncio
import contextvars
import ssl
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import aioimaplib
from aioimaplib.aioimaplib import CRLF, IncompleteRead, literal_data_re

MAX_LINE_BYTES = 16 * 1024 * 1024
"""The longest response line read. The longest a sound server sends is a SEARCH
answer listing every UID of a mailbox (about 2 million UIDs); beyond this the
server is taken to be sending an endless line."""

DEFAULT_MAX_LITERAL_BYTES = 16 * 1024 * 1024
"""The largest literal buffered for a command run outside `answer_limits`: those
carry mailbox names, labels and flags, never messages."""

DEFAULT_MAX_ANSWER_BYTES = 256 * 1024 * 1024
"""The largest answer held for a command run outside `answer_limits`. The largest a
sound server sends there is the flags of every message of a mailbox (a million
messages: about 100 MB, counted as below)."""

ANSWER_LINE_OVERHEAD = 64
"""What a held line costs beyond its bytes (a bytes object and its list slot),
counted against the budget: a million short lines weigh what they cost."""

# Longer than any 64-bit number: `{n}` with more digits is refused unread.
_MAX_SIZE_DIGITS = 20

_limits: contextvars.ContextVar[tuple[int, int]] = contextvars.ContextVar(
    "imap_answer_limits", default=(DEFAULT_MAX_LITERAL_BYTES, DEFAULT_MAX_ANSWER_BYTES)
)


@contextmanager
def answer_limits(*, max_literal_bytes: int, max_answer_bytes: int) -> Iterator[None]:
    """Commands created inside hold literals of up to `max_literal_bytes` and answers
    of up to `max_answer_bytes` (the sync's message fetches, which know the sizes of
    what they ask for)."""
    token = _limits.set((max_literal_bytes, max_answer_bytes))
    try:
        yield
    finally:
        _limits.reset(token)


class _ProtocolViolation(Exception):
    """What the server sent cannot be read on; the connection is dropped."""


class _Protocol(aioimaplib.IMAP4ClientProtocol):  # type: ignore[misc]
    # Set by aioimaplib's __init__, which mypy cannot see into.
    current_command: aioimaplib.Command | None
    # Why the connection was dropped, once it was (see the module doc).
    violation: str | None = None
    # A line whose CRLF has not arrived yet. Grown in place: concatenating every
    # chunk to it would copy it again for each chunk of a long line.
    _pending_line: bytearray | None = None

    def data_received(self, d: bytes) -> None:
        # aioimaplib's own version formats `'Received : %s' % d` before logging it at
        # DEBUG: a repr of every chunk read, whatever the log level, which cost a
        # quarter of the sync process' CPU in bench/sync.py.
        if self.violation is not None:
            return  # dropped: what is still in flight is not read
        data: bytes = d
        if self._pending_line is not None:
            pending = self._pending_line
            searched_up_to = max(len(pending) - 1, 0)  # a CR may end the previous chunk
            pending += d
            if pending.find(CRLF, searched_up_to) < 0:
                if len(pending) > MAX_LINE_BYTES:
                    self._drop(f"server sent a line of over {MAX_LINE_BYTES} bytes")
                return
            data, self._pending_line = bytes(pending), None
        try:
            self._handle_responses(data, self._handle_line, self.current_command)
            self.current_command = None
        except IncompleteRead as incomplete_read:
            self.current_command = incomplete_read.cmd
            rest: bytes = incomplete_read.data
            if len(rest) > MAX_LINE_BYTES:
                self._drop(f"server sent a line of over {MAX_LINE_BYTES} bytes")
            elif rest:
                self._pending_line = bytearray(rest)
        except _ProtocolViolation as exc:
            self._drop(str(exc))
        except Exception as exc:
            # aioimaplib raises Abort for a tagged reply nobody waits for (a literal
            # shorter than announced leaves message text to be read as replies).
            self._drop(f"unreadable server response ({type(exc).__name__})")

    def _drop(self, reason: str) -> None:
        """Stop reading, fail every waiting command with `reason`, close the socket."""
        self.violation = reason
        self._pending_line = None
        self.current_command = None
        self._fail_waiting(reason)
        if self.transport is not None:
            self.transport.close()

    def _fail_waiting(self, reason: str) -> None:
        waiting = [self.pending_sync_command, *self.pending_async_commands.values()]
        for command in waiting:
            if command is not None and not command._event.is_set():
                command._exception = aioimaplib.Abort(reason)
                command.close(reason.encode(), "BYE")

    def _handle_responses(
        self,
        data: bytes,
        line_handler: Callable[[bytes, aioimaplib.Command | None], aioimaplib.Command | None],
        current_cmd: aioimaplib.Command | None = None,
    ) -> None:
        position = 0
        while True:
            if position >= len(data):
                if self.pending_sync_command is not None:
                    self.pending_sync_command.flush()
                if current_cmd is not None and current_cmd.wait_data():
                    raise IncompleteRead(current_cmd)
                return
            if current_cmd is not None and current_cmd.wait_literal_data():
                rest = current_cmd.append_literal_data(data[position:])
                data, position = rest, 0
                if current_cmd.wait_literal_data():
                    raise IncompleteRead(current_cmd)
            end = data.find(CRLF, position)
            if end < 0:
                raise IncompleteRead(current_cmd, data[position:])
            line = data[position:end]
            position = end + len(CRLF)
            command = line_handler(line, current_cmd)
            if isinstance(command, RawCommand):
                command.charge(len(line) + ANSWER_LINE_OVERHEAD)
            begin_literal = literal_data_re.match(line) if line.endswith(b"}") else None
            if begin_literal:
                if command is None:
                    command = aioimaplib.Command("NIL", "unused")
                command.begin_literal_data(_literal_size(begin_literal.group("size"), command))
                current_cmd = command
            elif command is not None and command.wait_data():
                current_cmd = command
            else:
                current_cmd = None

    def _response_done(self, line: bytes) -> None:
        # aioimaplib hands IDLE's untagged lines to the push queue only at the end of a
        # read (`flush`). When the server has news as DONE arrives, it sends
        # `* 7 EXISTS` and IDLE's tagged OK together: in one read, the EXISTS would go
        # down with the finished command, and the push would be lost.
        command = self.pending_sync_command
        if isinstance(command, aioimaplib.IdleCommand):
            command.flush()
        super()._response_done(line)

    def _continuation(self, line: bytes) -> None:
        # aioimaplib logs the pending command's text with each continuation; an
        # AUTHENTICATE's text holds the bearer token.
        command = self.pending_sync_command
        if isinstance(command, AuthenticateCommand):
            command.append_to_resp(line)
            return
        super()._continuation(line)

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        # aioimaplib leaves waiting commands to their timeout; fail them now instead.
        self._fail_waiting(self.violation or "connection lost")


def _literal_size(digits: bytes, command: aioimaplib.Command) -> int:
    """The announced size of a literal, refused above what `command` may buffer."""
    limit = (
        command.literal_limit() if isinstance(command, RawCommand) else DEFAULT_MAX_LITERAL_BYTES
    )
    if len(digits) > _MAX_SIZE_DIGITS:
        raise _ProtocolViolation(f"server announced a literal of {len(digits)} digits")
    size = int(digits)
    if limit is not None and size > limit:
        raise _ProtocolViolation(
            f"server announced a literal of {size} bytes, over the {limit} accepted"
        )
    if limit is not None and isinstance(command, RawCommand):
        command.charge(size)
    return size


class ImapClient(aioimaplib.IMAP4):  # type: ignore[misc]
    def create_client(
        self,
        host: str,
        port: int,
        loop: asyncio.AbstractEventLoop | None,
        conn_lost_cb: Callable[[Exception | None], None] | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        local_loop = loop or asyncio.get_running_loop()
        self.protocol = _Protocol(local_loop, conn_lost_cb)
        self._client_task = local_loop.create_task(
            local_loop.create_connection(lambda: self.protocol, host, port, ssl=ssl_context)
        )

    @property
    def connecting(self) -> asyncio.Task[object]:
        """The task opening the connection (done once it is open, or failed)."""
        task: asyncio.Task[object] = self._client_task
        return task


class RawCommand(aioimaplib.Command):  # type: ignore[misc]
    """A command sent verbatim that receives every untagged response."""

    def __init__(self, tag: str, text: str, *, loop: asyncio.AbstractEventLoop, timeout: float):
        # "SELECT" only selects aioimaplib's dispatch (sync, valid when
        # authenticated or selected); the wire text is `text`.
        super().__init__("SELECT", tag, loop=loop, timeout=timeout)
        self._text = text
        self._literal = bytearray()
        self._filled = 0
        self._max_literal, self._max_answer = _limits.get()
        self._answer_left = self._max_answer

    def __repr__(self) -> str:
        return f"{self.tag} {self._text}"

    def literal_limit(self) -> int | None:
        """The largest literal this command buffers (None: it buffers none)."""
        return self._max_literal

    def charge(self, size: int) -> None:
        """Count `size` bytes of the answer against the command's budget."""
        self._answer_left -= size
        if self._answer_left < 0:
            raise _ProtocolViolation(
                f"server answered {self.tag} with over {self._max_answer} bytes"
            )

    # Literals are read into a buffer allocated once from the announced `{size}` and
    # handed on as is: aioimaplib grows a bytearray chunk by chunk (each reallocation
    # briefly holds two copies) and then copies it again.
    def begin_literal_data(self, expected_size: int, literal_data: bytes = b"") -> bytes:
        self._expected_size = expected_size
        self._literal = bytearray(expected_size)
        self._filled = 0
        return self.append_literal_data(literal_data)

    def wait_literal_data(self) -> bool:
        return bool(self._expected_size) and self._filled != self._expected_size

    def append_literal_data(self, data: bytes) -> bytes:
        take = min(len(data), self._expected_size - self._filled)
        self._literal[self._filled : self._filled + take] = memoryview(data)[:take]
        self._filled += take
        if self._filled == self._expected_size:
            self.append_to_resp(self._literal)
            self._expected_size, self._literal, self._filled = 0, bytearray(), 0
        self._reset_timer()
        return data[take:]


class StreamingCommand(RawCommand):
    """A FETCH of one body section whose literal is handed on chunk by chunk.

    Memory stays bounded whatever the size of the part: past a few chunks in the
    queue the socket stops being read (TCP back-pressure reaches the server) until
    the consumer catches up.
    """

    _PAUSE_AT = 8
    _RESUME_AT = 2

    def __init__(
        self,
        tag: str,
        text: str,
        *,
        loop: asyncio.AbstractEventLoop,
        timeout: float,
        transport: asyncio.Transport,
    ) -> None:
        super().__init__(tag, text, loop=loop, timeout=timeout)
        self.chunks: asyncio.Queue[bytes | None] = asyncio.Queue()
        self._transport = transport
        self._streaming = False
        self._streamed = False
        self._paused = False

    def begin_literal_data(self, expected_size: int, literal_data: bytes = b"") -> bytes:
        if self._streamed:  # only the first literal is the wanted section
            return super().begin_literal_data(expected_size, literal_data)
        self._expected_size = expected_size
        self._filled = 0
        self._streaming = True
        if expected_size == 0:
            self._finish_stream()
            return literal_data
        return self.append_literal_data(literal_data)

    def append_literal_data(self, data: bytes) -> bytes:
        if not self._streaming:
            return super().append_literal_data(data)
        take = min(len(data), self._expected_size - self._filled)
        if take:
            self.chunks.put_nowait(bytes(data[:take]))
            self._filled += take
        if self._filled == self._expected_size:
            self._finish_stream()
        elif self.chunks.qsize() >= self._PAUSE_AT and not self._paused:
            self._paused = True
            self._transport.pause_reading()
        self._reset_timer()
        return data[take:]

    def literal_limit(self) -> int | None:
        # The wanted section is handed on chunk by chunk, whatever its size.
        return super().literal_limit() if self._streamed else None

    def _finish_stream(self) -> None:
        self._streaming, self._streamed = False, True
        self._expected_size, self._filled = 0, 0
        self.chunks.put_nowait(None)

    def taken(self) -> None:
        """The consumer took a chunk: read the socket again once the queue is short."""
        if self._paused and self.chunks.qsize() <= self._RESUME_AT:
            self._paused = False
            self._transport.resume_reading()
            # A paused socket does not count against the command's timeout.
            self._reset_timer()

    def close(self, line: bytes, result: str) -> None:
        super().close(line, result)
        if not self._streamed:
            self._streamed = True
            self.chunks.put_nowait(None)


class AuthenticateCommand(aioimaplib.Command):  # type: ignore[misc]
    """`AUTHENTICATE <mechanism>` with a SASL initial response (RFC 3501 §6.2.2, RFC 4959).

    aioimaplib's own XOAUTH2 leaves the server's error challenge unanswered, so a
    refused token hangs until the timeout. Here every challenge is answered: the
    first with the initial response when the server lacks SASL-IR, the next (the
    server's error report) with `acknowledgement`, after which the server sends
    its tagged NO.
    """

    def __init__(
        self,
        tag: str,
        *,
        mechanism: str,
        initial_response: str,
        acknowledgement: str,
        send_initial: bool,
        transport: asyncio.BaseTransport,
        loop: asyncio.AbstractEventLoop,
        timeout: float,
    ) -> None:
        super().__init__("AUTHENTICATE", tag, loop=loop, timeout=timeout)
        self._mechanism = mechanism
        self._initial = initial_response
        self._acknowledgement = acknowledgement
        self._pending_initial = not send_initial
        self._sent_inline = send_initial
        self._transport = transport

    def __repr__(self) -> str:
        inline = f" {self._initial or '='}" if self._sent_inline else ""
        return f"{self.tag} AUTHENTICATE {self._mechanism}{inline}"

    def append_to_resp(self, line: bytes, result: str = "Pending") -> None:
        if result == "Pending" and bytes(line).startswith(b"+"):
            answer = self._initial if self._pending_initial else self._acknowledgement
            self._pending_initial = False
            assert isinstance(self._transport, asyncio.WriteTransport)
            self._transport.write(answer.encode("ascii") + CRLF)
            self._reset_timer()
            return
        super().append_to_resp(line, result)
