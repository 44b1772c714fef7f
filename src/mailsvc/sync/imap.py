"""IMAP client adapter over aioimaplib; the only importer of aioimaplib.

Two things of aioimaplib are replaced here, each for a measured reason:

- Its response reader recursed once per line, so a long response (a
  `UID FETCH 1:* (FLAGS)` of 5,000 messages) overflowed the stack and left the
  connection hanging. `_Protocol` reads iteratively, with the same semantics.
- It routes untagged responses by command name, dropping those of another
  name (the `STATUS` lines of `LIST ... RETURN (STATUS ...)`, an `EXISTS`
  during a `FETCH`). Commands sent through `ImapConnection.command` run as
  "sync" commands, which receive every untagged response, and `str()` of the
  command is the wire text, so any command can be sent.

STARTTLS is done with `loop.start_tls` on the protocol's transport.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any

import aioimaplib
from aioimaplib.aioimaplib import CRLF, IncompleteRead, literal_data_re

from mailsvc.kit.mailserver import MailServer, Security, safe_server_text
from mailsvc.kit.tasks import cancel_and_wait
from mailsvc.sync import wire


class ImapError(Exception):
    """Root of the adapter's errors; the message is safe to show to a client."""


class ImapConnectError(ImapError):
    """The server could not be reached, timed out, failed TLS, or dropped the connection."""


class ImapAuthError(ImapError):
    """The server refused the login."""


class ImapCommandError(ImapError):
    """The server answered NO or BAD to a command."""


class _Protocol(aioimaplib.IMAP4ClientProtocol):  # type: ignore[misc]
    # Set by aioimaplib's __init__, which mypy cannot see into.
    incomplete_line: bytes
    current_command: aioimaplib.Command | None

    def data_received(self, d: bytes) -> None:
        # aioimaplib's own version formats `'Received : %s' % d` before logging it at
        # DEBUG: a repr of every chunk read, whatever the log level, which cost a
        # quarter of the sync process' CPU in bench/sync.py.
        data = self.incomplete_line + d if self.incomplete_line else d
        try:
            self._handle_responses(data, self._handle_line, self.current_command)
            self.incomplete_line = b""
            self.current_command = None
        except IncompleteRead as incomplete_read:
            self.current_command = incomplete_read.cmd
            self.incomplete_line = incomplete_read.data

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
            begin_literal = literal_data_re.match(line)
            if begin_literal:
                if command is None:
                    command = aioimaplib.Command("NIL", "unused")
                command.begin_literal_data(int(begin_literal.group("size")))
                current_cmd = command
            elif command is not None and command.wait_data():
                current_cmd = command
            else:
                current_cmd = None

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        # aioimaplib leaves waiting commands to their timeout; fail them now instead.
        waiting = [self.pending_sync_command, *self.pending_async_commands.values()]
        for command in waiting:
            if command is not None and not command._event.is_set():
                command._exception = aioimaplib.Abort("connection lost")
                command.close(b"connection lost", "BYE")


class _Client(aioimaplib.IMAP4):  # type: ignore[misc]
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


class _RawCommand(aioimaplib.Command):  # type: ignore[misc]
    """A command sent verbatim that receives every untagged response."""

    def __init__(self, tag: str, text: str, *, loop: asyncio.AbstractEventLoop, timeout: float):
        # "SELECT" only selects aioimaplib's dispatch (sync, valid when
        # authenticated or selected); the wire text is `text`.
        super().__init__("SELECT", tag, loop=loop, timeout=timeout)
        self._text = text
        self._literal = bytearray()
        self._filled = 0

    def __repr__(self) -> str:
        return f"{self.tag} {self._text}"

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


class _StreamingCommand(_RawCommand):
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


def _retrieve_result(task: asyncio.Future[object]) -> None:
    """Mark a background task's error as seen, so asyncio does not log it at exit."""
    if not task.cancelled():
        task.exception()


def _reply_text(response: aioimaplib.Response) -> str:
    lines = [line for line in response.lines if isinstance(line, bytes | str)]
    return safe_server_text(lines[-1] if lines else response.result)


class ImapConnection:
    """One logged-in IMAP connection."""

    def __init__(self, client: _Client, *, io_timeout: float) -> None:
        self._client = client
        self._io_timeout = io_timeout
        self.selected: str | None = None

    @property
    def capabilities(self) -> frozenset[str]:
        return frozenset(str(c).upper() for c in self._client.protocol.capabilities)

    def has(self, capability: str) -> bool:
        return capability.upper() in self.capabilities

    async def command(
        self, text: str, *, io_timeout: float | None = None
    ) -> list[bytes | bytearray]:
        """Send `text` as one command; the untagged lines of its answer (OK required).

        `io_timeout` bounds the silence between two received lines, not the whole
        command, so a large FETCH may take as long as it keeps streaming.
        """
        if any(c in text for c in "\r\n\0"):
            raise ValueError("CR, LF and NUL cannot appear in a command")
        protocol = self._client.protocol
        command = _RawCommand(
            protocol.new_tag(), text, loop=protocol.loop, timeout=io_timeout or self._io_timeout
        )
        lines: list[bytes | bytearray] = (await self._execute(command, text)).lines[:-1]
        return lines

    async def _execute(self, command: _RawCommand, text: str) -> aioimaplib.Response:
        try:
            response: aioimaplib.Response = await self._client.protocol.execute(command)
        except aioimaplib.CommandTimeout as exc:
            raise ImapConnectError("server stopped answering") from exc
        except (OSError, aioimaplib.AioImapException) as exc:
            raise ImapConnectError(f"connection failed: {safe_server_text(str(exc))}") from exc
        if response.result != "OK":
            verb = text.split(" ", 2)[:2]
            raise ImapCommandError(f"{' '.join(verb)} refused: {_reply_text(response)}")
        return response

    async def stream_section(self, uid: int, section: str) -> AsyncGenerator[bytes]:
        """`UID FETCH uid (BODY.PEEK[section])`, yielded in chunks as they arrive.

        `section` is "" for the whole message or a part number such as "2.1". Yields
        nothing when the server has no such message (it was expunged).
        """
        if not all(c.isdigit() or c == "." for c in section):
            raise ValueError(f"not a part number: {section!r}")
        text = f"UID FETCH {uid} (BODY.PEEK[{section}])"
        protocol = self._client.protocol
        command = _StreamingCommand(
            protocol.new_tag(),
            text,
            loop=protocol.loop,
            timeout=self._io_timeout,
            transport=protocol.transport,
        )
        running = asyncio.ensure_future(self._execute(command, text))
        try:
            while True:
                chunk = await _first(command.chunks.get(), running)
                if chunk is None:
                    break
                command.taken()
                yield chunk
            await running
        finally:
            if not running.done():
                # The consumer went away mid-stream (client disconnected): the rest of
                # the literal cannot be skipped cheaply, so the connection is dropped.
                self.close()
                await cancel_and_wait([running])

    async def uid_store(
        self, uid_set: str, change: str, flags: Sequence[str]
    ) -> list[wire.FetchedItem]:
        """`UID STORE uid_set +FLAGS|-FLAGS (flags)`; the server's resulting flags."""
        if change not in ("+FLAGS", "-FLAGS"):
            raise ValueError(change)
        items = " ".join(flags)
        return wire.parse_fetch(await self.command(f"UID STORE {uid_set} {change} ({items})"))

    async def uid_move(self, uid_set: str, mailbox: str) -> tuple[int, dict[int, int]] | None:
        """`UID MOVE` (RFC 6851); the COPYUID mapping when the server gives one."""
        text = f"UID MOVE {uid_set} {wire.quote(wire.encode_mailbox_name(mailbox))}"
        response = await self._run(text)
        return wire.parse_copyuid(response.lines)

    async def uid_copy(self, uid_set: str, mailbox: str) -> tuple[int, dict[int, int]] | None:
        text = f"UID COPY {uid_set} {wire.quote(wire.encode_mailbox_name(mailbox))}"
        response = await self._run(text)
        return wire.parse_copyuid(response.lines)

    async def uid_expunge(self, uid_set: str) -> None:
        """Expunge exactly these UIDs (RFC 4315 UIDPLUS), never other `\\Deleted` mail."""
        await self.command(f"UID EXPUNGE {uid_set}")

    async def append(
        self, mailbox: str, message: bytes, *, flags: Sequence[str] = ()
    ) -> tuple[int, int] | None:
        """`APPEND` a whole message; its (UIDVALIDITY, UID) when the server says (UIDPLUS)."""
        name = wire.quote(wire.encode_mailbox_name(mailbox))
        try:
            response: aioimaplib.Response = await self._client.protocol.append(
                message,
                name,
                "(" + " ".join(flags) + ")" if flags else None,
                timeout=self._io_timeout,
            )
        except aioimaplib.CommandTimeout as exc:
            raise ImapConnectError("server stopped answering") from exc
        except (OSError, aioimaplib.AioImapException) as exc:
            raise ImapConnectError(f"connection failed: {safe_server_text(str(exc))}") from exc
        if response.result != "OK":
            raise ImapCommandError(f"APPEND refused: {_reply_text(response)}")
        return wire.parse_appenduid(response.lines)

    async def _run(self, text: str) -> aioimaplib.Response:
        protocol = self._client.protocol
        command = _RawCommand(
            protocol.new_tag(), text, loop=protocol.loop, timeout=self._io_timeout
        )
        return await self._execute(command, text)

    async def enable(self, *extensions: str) -> None:
        wanted = [e for e in extensions if self.has(e)]
        if wanted and self.has("ENABLE"):
            await self.command("ENABLE " + " ".join(wanted))

    async def list_mailboxes(self) -> list[wire.ListedMailbox]:
        suffix = " RETURN (SPECIAL-USE)" if self.has("SPECIAL-USE") else ""
        return wire.parse_list(await self.command(f'LIST "" "*"{suffix}'))

    async def select(
        self,
        name: str,
        *,
        condstore: bool = False,
        qresync: tuple[int, int] | None = None,
        readonly: bool = False,
    ) -> wire.SelectedState:
        """SELECT (or EXAMINE) a mailbox, with CONDSTORE or QRESYNC parameters."""
        verb = "EXAMINE" if readonly else "SELECT"
        text = f"{verb} {wire.quote(wire.encode_mailbox_name(name))}"
        if qresync is not None and self.has("QRESYNC"):
            text += f" (QRESYNC ({qresync[0]} {qresync[1]}))"
        elif condstore and self.has("CONDSTORE"):
            text += " (CONDSTORE)"
        state = wire.parse_select(await self.command(text))
        self.selected = name
        # aioimaplib's own state machine gates commands such as UID and IDLE.
        self._client.protocol.state = aioimaplib.SELECTED
        return state

    async def uid_fetch(
        self, uid_set: str, items: str, *, modifiers: str = ""
    ) -> tuple[list[wire.FetchedItem], list[int]]:
        """`UID FETCH`; returns the items and any VANISHED (EARLIER) UIDs."""
        text = f"UID FETCH {uid_set} ({items})" + (f" ({modifiers})" if modifiers else "")
        lines = await self.command(text)
        return wire.parse_fetch(lines), wire.parse_vanished(lines)

    async def uid_search(self, criteria: str) -> list[int]:
        return wire.parse_search(await self.command(f"UID SEARCH {criteria}"))

    async def noop(self) -> list[bytes | bytearray]:
        return await self.command("NOOP")

    async def idle(self, *, wait_seconds: float) -> list[bytes]:
        """IDLE until the server reports something or `wait_seconds` pass; then DONE.

        Returns the untagged lines received (EXISTS, EXPUNGE, FETCH, VANISHED).
        """
        client = self._client
        try:
            idle_task = await client.idle_start(timeout=wait_seconds)
        except (OSError, aioimaplib.AioImapException, TimeoutError) as exc:
            raise ImapConnectError("connection failed during IDLE") from exc
        # Nobody awaits aioimaplib's IDLE task once this call is cancelled.
        idle_task.add_done_callback(_retrieve_result)
        pushed: list[bytes] = []
        try:
            batch = await client.wait_server_push(timeout=wait_seconds)
            if isinstance(batch, list):
                pushed.extend(line for line in batch if isinstance(line, bytes))
        except TimeoutError:
            pass
        finally:
            # Also when cancelled: leave IDLE, so the connection can still LOGOUT.
            client.idle_done()
        try:
            await asyncio.wait_for(idle_task, self._io_timeout)
        except (OSError, aioimaplib.AioImapException, TimeoutError) as exc:
            raise ImapConnectError("connection failed during IDLE") from exc
        return pushed

    async def logout(self) -> None:
        """Log out politely; a connection that is already gone is not an error here."""
        transport = self._client.protocol.transport
        if transport is None or transport.is_closing():
            return
        try:
            await self._client.logout()
        except (aioimaplib.AioImapException, OSError, TimeoutError):
            pass
        self.close()

    def close(self) -> None:
        transport = self._client.protocol.transport
        if transport is not None:
            transport.close()


async def _first(getting: Awaitable[bytes | None], running: asyncio.Future[Any]) -> bytes | None:
    """The next chunk, or the command's error if it ends first without one."""
    waiter = asyncio.ensure_future(getting)
    try:
        await asyncio.wait({waiter, running}, return_when=asyncio.FIRST_COMPLETED)
    except BaseException:
        waiter.cancel()
        raise
    if waiter.done():
        return waiter.result()
    waiter.cancel()
    running.result()  # raises the command's error
    return None


async def _start_tls(client: _Client, host: str, context: ssl.SSLContext) -> None:
    protocol = client.protocol
    response = await asyncio.wait_for(
        protocol.execute(aioimaplib.Command("STARTTLS", protocol.new_tag(), loop=protocol.loop)),
        client.timeout,
    )
    if response.result != "OK":
        raise ImapConnectError(f"STARTTLS refused: {_reply_text(response)}")
    loop = asyncio.get_running_loop()
    transport = await loop.start_tls(protocol.transport, protocol, context, server_hostname=host)
    if transport is None:
        raise ImapConnectError("STARTTLS upgrade failed")
    protocol.transport = transport
    # RFC 3501 6.2.1: capabilities learned before STARTTLS must be discarded.
    await asyncio.wait_for(protocol.capability(), client.timeout)


async def connect_imap(
    server: MailServer, *, io_timeout: float, tls: ssl.SSLContext
) -> ImapConnection:
    """Connect and log in; raises `ImapConnectError` or `ImapAuthError`."""
    try:
        client = _Client(
            server.host,
            server.port,
            timeout=io_timeout,
            ssl_context=tls if server.security is Security.TLS else None,
        )
        await client.wait_hello_from_server()
        if server.security is Security.STARTTLS:
            await _start_tls(client, server.host, tls)
    except ImapError:
        raise
    except ssl.SSLError as exc:
        raise ImapConnectError(f"TLS handshake failed: {exc.reason or exc}") from exc
    except (OSError, TimeoutError, aioimaplib.AioImapException) as exc:
        reason = safe_server_text(str(exc)) or type(exc).__name__
        raise ImapConnectError(f"cannot connect to {server.host}:{server.port}: {reason}") from exc
    try:
        response = await client.login(server.username, server.password)
    except (OSError, TimeoutError, aioimaplib.AioImapException) as exc:
        raise ImapConnectError("connection lost during login") from exc
    connection = ImapConnection(client, io_timeout=io_timeout)
    if response.result != "OK":
        await connection.logout()
        raise ImapAuthError(f"login refused: {_reply_text(response)}")
    # Extensions such as CONDSTORE and QRESYNC are often announced only after login.
    try:
        await asyncio.wait_for(client.protocol.capability(), io_timeout)
    except (OSError, TimeoutError, aioimaplib.AioImapException) as exc:
        raise ImapConnectError("connection lost after login") from exc
    return connection


@asynccontextmanager
async def imap_session(
    server: MailServer, *, io_timeout: float, tls: ssl.SSLContext
) -> AsyncIterator[ImapConnection]:
    """A logged-in connection for one piece of work, logged out when it ends."""
    connection = await connect_imap(server, io_timeout=io_timeout, tls=tls)
    try:
        yield connection
    finally:
        await connection.logout()


async def check_imap_login(server: MailServer, *, io_timeout: float, tls: ssl.SSLContext) -> None:
    """Prove that `server` accepts the login, then disconnect."""
    async with imap_session(server, io_timeout=io_timeout, tls=tls):
        pass


__all__: Sequence[str] = (
    "ImapAuthError",
    "ImapCommandError",
    "ImapConnectError",
    "ImapConnection",
    "ImapError",
    "check_imap_login",
    "connect_imap",
    "imap_session",
)
