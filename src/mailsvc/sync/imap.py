"""IMAP client adapter over aioimaplib: connect (TLS, STARTTLS or plain) and log in.

aioimaplib has no STARTTLS command of its own, so the upgrade is done here with
`loop.start_tls` on the protocol's transport after the server's OK.
"""

from __future__ import annotations

import asyncio
import ssl

import aioimaplib

from mailsvc.kit.mailserver import MailServer, Security, safe_server_text


class ImapError(Exception):
    """Root of the adapter's errors; the message is safe to show to a client."""


class ImapConnectError(ImapError):
    """The server could not be reached, timed out, or failed the TLS handshake."""


class ImapAuthError(ImapError):
    """The server refused the login."""


def _reply_text(response: aioimaplib.Response) -> str:
    lines = [line for line in response.lines if isinstance(line, bytes | str)]
    return safe_server_text(lines[-1] if lines else response.result)


class ImapConnection:
    """One logged-in IMAP connection."""

    def __init__(self, client: aioimaplib.IMAP4) -> None:
        self._client = client

    @property
    def capabilities(self) -> frozenset[str]:
        return frozenset(str(c).upper() for c in self._client.protocol.capabilities)

    async def logout(self) -> None:
        """Log out politely; a connection that is already gone is not an error here."""
        try:
            await self._client.logout()
        except (aioimaplib.AioImapException, OSError, TimeoutError):
            pass


async def _start_tls(client: aioimaplib.IMAP4, host: str, context: ssl.SSLContext) -> None:
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
        if server.security is Security.TLS:
            client: aioimaplib.IMAP4 = aioimaplib.IMAP4_SSL(
                server.host, server.port, timeout=io_timeout, ssl_context=tls
            )
        else:
            client = aioimaplib.IMAP4(server.host, server.port, timeout=io_timeout)
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
    if response.result != "OK":
        await ImapConnection(client).logout()
        raise ImapAuthError(f"login refused: {_reply_text(response)}")
    return ImapConnection(client)


async def check_imap_login(server: MailServer, *, io_timeout: float, tls: ssl.SSLContext) -> None:
    """Prove that `server` accepts the login, then disconnect."""
    connection = await connect_imap(server, io_timeout=io_timeout, tls=tls)
    await connection.logout()
