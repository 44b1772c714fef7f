"""A connection that fails before login is closed by us, not left to the server.

A server that accepts and never greets used to keep our socket open until its own
inactivity timeout (Dovecot: 180 s); thousands of such watchers would hold as many
sockets. A small real server on loopback that never greets.
"""

from __future__ import annotations

import asyncio

import pytest

from mailsvc.imap.connection import connect_imap
from mailsvc.imap.errors import ImapConnectError
from mailsvc.kit.mailserver import MailServer, Security, tls_context
from tests.fixtures.net import LOOPBACK


async def test_a_greeting_that_never_comes_leaves_no_open_socket() -> None:
    closed = asyncio.get_running_loop().create_future()

    async def never_greet(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # EOF arrives once the client has closed its end.
        await reader.read()
        closed.set_result(True)
        writer.close()

    server = await asyncio.start_server(never_greet, LOOPBACK, 0)
    async with server:
        port = server.sockets[0].getsockname()[1]
        with pytest.raises(ImapConnectError):
            await connect_imap(
                MailServer(LOOPBACK, port, Security.NONE, "ada", "secret"),
                io_timeout=0.3,
                tls=tls_context(),
            )
        assert await asyncio.wait_for(closed, 5)
