"""One logged-in IMAP connection: the commands mailsvc sends and their parsed answers.

Every command goes through `ImapConnection.command` as a `RawCommand` (see
protocol.py), so it receives every untagged response. STARTTLS is done with
`loop.start_tls` on the protocol's transport.
"""

from __future__ import annotations

import asyncio
import re
import ssl
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Sequence
from contextlib import asynccontextmanager
from typing import Any

import aioimaplib

from mailsvc.imap import names, uids, wire
from mailsvc.imap.errors import ImapAuthError, ImapCommandError, ImapConnectError, ImapError
from mailsvc.imap.protocol import AuthenticateCommand, ImapClient, RawCommand, StreamingCommand
from mailsvc.kit import sasl
from mailsvc.kit.mailserver import MailServer, Security, tls_failure_reason
from mailsvc.kit.tasks import cancel_and_wait
from mailsvc.mime.text import safe_server_text


def _retrieve_result(task: asyncio.Future[object]) -> None:
    """Mark a background task's error as seen, so asyncio does not log it at exit."""
    if not task.cancelled():
        task.exception()


def _reply_text(response: aioimaplib.Response) -> str:
    lines = [line for line in response.lines if isinstance(line, bytes | str)]
    return safe_server_text(lines[-1] if lines else response.result)


class ImapConnection:
    """One logged-in IMAP connection."""

    def __init__(self, client: ImapClient, *, io_timeout: float) -> None:
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
        command = RawCommand(
            protocol.new_tag(), text, loop=protocol.loop, timeout=io_timeout or self._io_timeout
        )
        lines: list[bytes | bytearray] = (await self._execute(command, text)).lines[:-1]
        return lines

    async def _execute(self, command: RawCommand, text: str) -> aioimaplib.Response:
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
        command = StreamingCommand(
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

    async def uid_store_labels(
        self, uid_set: str, change: str, labels: Sequence[str]
    ) -> list[wire.FetchedItem]:
        """Gmail's `UID STORE uid_set +X-GM-LABELS|-X-GM-LABELS (labels)`; the labels
        the server answers with (`FetchedItem.gm_labels`).

        System labels (`\\Inbox`, `\\Starred`) go as the atoms Gmail names them by;
        user labels as quoted modified UTF-7 (ValueError for CR, LF or NUL).
        """
        if change not in ("+X-GM-LABELS", "-X-GM-LABELS"):
            raise ValueError(change)
        items = " ".join(_label_argument(label) for label in labels)
        return wire.parse_fetch(await self.command(f"UID STORE {uid_set} {change} ({items})"))

    async def uid_move(self, uid_set: str, mailbox: str) -> tuple[int, dict[int, int]] | None:
        """`UID MOVE` (RFC 6851); the COPYUID mapping when the server gives one."""
        text = f"UID MOVE {uid_set} {names.quote(names.encode(mailbox))}"
        response = await self._run(text)
        return uids.parse_copyuid(response.lines)

    async def uid_copy(self, uid_set: str, mailbox: str) -> tuple[int, dict[int, int]] | None:
        text = f"UID COPY {uid_set} {names.quote(names.encode(mailbox))}"
        response = await self._run(text)
        return uids.parse_copyuid(response.lines)

    async def uid_expunge(self, uid_set: str) -> None:
        """Expunge exactly these UIDs (RFC 4315 UIDPLUS), never other `\\Deleted` mail."""
        await self.command(f"UID EXPUNGE {uid_set}")

    async def append(
        self, mailbox: str, message: bytes, *, flags: Sequence[str] = ()
    ) -> tuple[int, int] | None:
        """`APPEND` a whole message; its (UIDVALIDITY, UID) when the server says (UIDPLUS)."""
        name = names.quote(names.encode(mailbox))
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
        return uids.parse_appenduid(response.lines)

    async def _run(self, text: str) -> aioimaplib.Response:
        protocol = self._client.protocol
        command = RawCommand(protocol.new_tag(), text, loop=protocol.loop, timeout=self._io_timeout)
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
        text = f"{verb} {names.quote(names.encode(name))}"
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
        push = asyncio.ensure_future(client.wait_server_push(timeout=wait_seconds))
        try:
            # A lost connection ends the IDLE command (the protocol fails it); a server
            # that died without a BYE sends no push to wait for.
            await asyncio.wait([push, idle_task], return_when=asyncio.FIRST_COMPLETED)
        finally:
            push.cancel()
            # Also when cancelled: leave IDLE, so the connection can still LOGOUT.
            client.idle_done()
        if push.done() and not push.cancelled() and push.exception() is None:
            batch = push.result()
            if isinstance(batch, list):
                pushed.extend(line for line in batch if isinstance(line, bytes))
        try:
            await asyncio.wait_for(idle_task, self._io_timeout)
        except (OSError, aioimaplib.AioImapException, TimeoutError) as exc:
            raise ImapConnectError("connection failed during IDLE") from exc
        # What came after the first push, up to IDLE's end (news the server had when
        # DONE arrived, above all), and the stop marker of aioimaplib's IDLE timer: taken
        # now, so the change is reported by this cycle and the next one does not wake
        # up at once for a stale marker.
        queue = client.protocol.idle_queue
        while not queue.empty():
            batch = queue.get_nowait()
            if isinstance(batch, list) and batch is not aioimaplib.STOP_WAIT_SERVER_PUSH:
                pushed.extend(line for line in batch if isinstance(line, bytes))
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


# A system label as Gmail writes it: a backslash and letters (`\Inbox`, `\Starred`).
_SYSTEM_LABEL = re.compile(r"\\[A-Za-z]{1,32}")


def _label_argument(label: str) -> str:
    """One label of an X-GM-LABELS STORE: a system label as its atom, any other as a
    quoted modified UTF-7 string (a user label may hold spaces and quotes)."""
    if _SYSTEM_LABEL.fullmatch(label):
        return label
    return names.quote(names.encode(label))


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


async def _start_tls(client: ImapClient, host: str, context: ssl.SSLContext) -> None:
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


def _abandon(client: ImapClient) -> None:
    """Drop a connection that will not be used, rather than leave its socket open until
    the server's own timeout (a greeting that never came, a failed STARTTLS)."""
    client.connecting.cancel()  # no effect once connected
    transport = client.protocol.transport
    if transport is not None:
        transport.close()


async def connect_imap(
    server: MailServer, *, io_timeout: float, tls: ssl.SSLContext
) -> ImapConnection:
    """Connect and log in; raises `ImapConnectError` or `ImapAuthError`."""
    client = ImapClient(
        server.host,
        server.port,
        timeout=io_timeout,
        ssl_context=tls if server.security is Security.TLS else None,
    )
    try:
        await client.wait_hello_from_server()
        if server.security is Security.STARTTLS:
            await _start_tls(client, server.host, tls)
    except ImapError:
        _abandon(client)
        raise
    except ssl.SSLError as exc:
        _abandon(client)
        reason = safe_server_text(tls_failure_reason(exc))
        raise ImapConnectError(f"TLS handshake failed: {reason}") from exc
    except (OSError, TimeoutError, aioimaplib.AioImapException) as exc:
        _abandon(client)
        reason = safe_server_text(str(exc)) or type(exc).__name__
        raise ImapConnectError(f"cannot connect to {server.host}:{server.port}: {reason}") from exc
    except BaseException:
        _abandon(client)
        raise
    try:
        if server.access_token is not None:
            response = await _authenticate_oauth(client, server, io_timeout=io_timeout)
        else:
            response = await client.login(server.username, server.password)
    except (OSError, TimeoutError, aioimaplib.AioImapException) as exc:
        _abandon(client)
        raise ImapConnectError("connection lost during login") from exc
    except ImapAuthError:
        _abandon(client)  # no mechanism to log in with: nothing to say
        raise
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


async def _authenticate_oauth(
    client: ImapClient, server: MailServer, *, io_timeout: float
) -> aioimaplib.Response:
    """AUTHENTICATE with the access token by XOAUTH2 or OAUTHBEARER, as offered."""
    assert server.access_token is not None
    protocol = client.protocol
    offered = [
        c[len("AUTH=") :] for c in protocol.capabilities if str(c).upper().startswith("AUTH=")
    ]
    mechanism = sasl.oauth_mechanism(offered)
    if mechanism is None:
        raise ImapAuthError("the server offers no OAuth2 login (AUTH=XOAUTH2 or AUTH=OAUTHBEARER)")
    initial = sasl.initial_response(
        mechanism,
        user=server.username,
        token=server.access_token,
        host=server.host,
        port=server.port,
    )
    command = AuthenticateCommand(
        protocol.new_tag(),
        mechanism=mechanism,
        initial_response=initial,
        acknowledgement=sasl.error_acknowledgement(mechanism),
        send_initial="SASL-IR" in {str(c).upper() for c in protocol.capabilities},
        transport=protocol.transport,
        loop=protocol.loop,
        timeout=io_timeout,
    )
    # `scrub` keeps the token out of aioimaplib's debug log of what it sends.
    response: aioimaplib.Response = await protocol.execute(command, scrub=initial)
    if response.result == "OK":
        protocol.state = aioimaplib.AUTH
    return response


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
    "ImapConnection",
    "check_imap_login",
    "connect_imap",
    "imap_session",
)
