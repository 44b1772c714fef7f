"""A change the server reports as IDLE ends is not lost.

When the server has news as DONE arrives, it sends `* 7 EXISTS` and IDLE's tagged OK
in one write. aioimaplib hands IDLE's untagged lines on only at the end of a read, so
that EXISTS went down with the finished command: a message delivered at the moment a
watcher re-issued IDLE (after every keepalive) stayed invisible until something else
woke the mailbox. A small real server on loopback sends exactly that.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from mailsvc.imap.connection import connect_imap
from mailsvc.kit.mailserver import MailServer, Security, tls_context
from mailsvc.sync.idle_watch import reports_change
from tests.fixtures.net import LOOPBACK


async def _serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write(b"* OK ready\r\n")
    idle_tag = b""
    while line := await reader.readline():
        tag, _, rest = line.strip().partition(b" ")
        verb = rest.split(b" ", 1)[0].upper()
        if tag == b"DONE":
            # The news and the end of IDLE in one write, as a server sends them.
            writer.write(b"* 7 EXISTS\r\n" + idle_tag + b" OK Idle completed.\r\n")
        elif verb == b"CAPABILITY":
            writer.write(b"* CAPABILITY IMAP4rev1 IDLE\r\n" + tag + b" OK done\r\n")
        elif verb == b"LOGIN":
            writer.write(tag + b" OK logged in\r\n")
        elif verb == b"EXAMINE":
            writer.write(
                b"* 6 EXISTS\r\n* OK [UIDVALIDITY 1] ok\r\n* OK [UIDNEXT 7] ok\r\n"
                + tag
                + b" OK [READ-ONLY] done\r\n"
            )
        elif verb == b"IDLE":
            idle_tag = tag
            # Then a keepalive: the watcher leaves IDLE and re-issues it.
            writer.write(b"+ idling\r\n* OK Still here\r\n")
        elif verb == b"LOGOUT":
            writer.write(b"* BYE\r\n" + tag + b" OK bye\r\n")
        await writer.drain()
    writer.close()


@pytest.fixture
async def server() -> AsyncIterator[int]:
    listening = await asyncio.start_server(_serve, LOOPBACK, 0)
    async with listening:
        yield listening.sockets[0].getsockname()[1]


async def test_news_sent_with_the_end_of_idle_is_reported(server: int) -> None:
    connection = await connect_imap(
        MailServer(LOOPBACK, server, Security.NONE, "ada", "secret"),
        io_timeout=5,
        tls=tls_context(),
    )
    try:
        await connection.select("INBOX", readonly=True)
        first = await asyncio.wait_for(connection.idle(wait_seconds=30), 10)
        assert reports_change(first), first
        # Nothing stale is left for the next cycle to wake up for.
        assert connection._client.protocol.idle_queue.empty()
    finally:
        await connection.logout()
