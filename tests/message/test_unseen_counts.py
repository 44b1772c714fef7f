"""`messages_unseen` of a mailbox follows its stored flags: sync, flag changes, moves."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
from sqlalchemy import func, select, text

from mailsvc.mirror.repository import UNSEEN
from mailsvc.models import Mailbox, Message
from mailsvc.sync.engine import SyncEngine
from tests.fixtures import imap_client
from tests.fixtures.dovecot import DovecotServer
from tests.fixtures.mail import SyncTarget
from tests.sync.messages import make_message

Headers = dict[str, str]


async def _mailboxes(
    client: httpx.AsyncClient, auth: Headers, target: SyncTarget
) -> dict[str, dict[str, Any]]:
    response = await client.get(f"/api/accounts/{target.account_id}/mailboxes", headers=auth)
    assert response.status_code == 200, response.text
    return {m["name"]: m for m in response.json()["items"]}


async def _unseen(client: httpx.AsyncClient, auth: Headers, target: SyncTarget) -> dict[str, int]:
    """Unread counts by mailbox name, as the mailbox list shows them (and sync status)."""
    listed = {
        name: m["messages_unseen"] for name, m in (await _mailboxes(client, auth, target)).items()
    }
    status = await client.get(f"/api/sync/status/{target.account_id}", headers=auth)
    assert status.status_code == 200, status.text
    assert {m["name"]: m["messages_unseen"] for m in status.json()["mailboxes"]} == listed
    return {name: count for name, count in listed.items() if name in ("INBOX", "Archive")}


async def _ids_by_subject(client: httpx.AsyncClient, auth: Headers) -> dict[str, str]:
    response = await client.get("/api/messages", params={"limit": 100}, headers=auth)
    assert response.status_code == 200, response.text
    return {m["subject"]: m["id"] for m in response.json()["items"]}


async def test_unseen_counts_follow_sync_flag_changes_and_moves(
    client: httpx.AsyncClient,
    auth: Headers,
    engine: SyncEngine,
    target: SyncTarget,
    dovecot: DovecotServer,
) -> None:
    unread = [make_message(n)[1] for n in range(4)]
    read = [make_message(10 + n)[1] for n in range(2)]
    await asyncio.to_thread(imap_client.append, dovecot, target.user, "INBOX", unread)
    await asyncio.to_thread(imap_client.append, dovecot, target.user, "INBOX", read, flags="\\Seen")
    await engine.sync_account(target.tenant_id, target.account_id)
    assert await _unseen(client, auth, target) == {"INBOX": 4, "Archive": 0}

    # Read through the API: the count drops at once, no sync needed.
    ids = await _ids_by_subject(client, auth)
    patched = await client.patch(
        f"/api/messages/{ids['Message number 0']}", json={"seen": True}, headers=auth
    )
    assert patched.status_code == 200, patched.text
    assert await _unseen(client, auth, target) == {"INBOX": 3, "Archive": 0}

    # Unread again on the server, plus new mail: the next pass counts both.
    await asyncio.to_thread(
        imap_client.run, dovecot, target.user, "INBOX", ("STORE", "5", "-FLAGS", "(\\Seen)")
    )
    await asyncio.to_thread(
        imap_client.append, dovecot, target.user, "INBOX", [make_message(20)[1]]
    )
    await engine.sync_account(target.tenant_id, target.account_id)
    assert await _unseen(client, auth, target) == {"INBOX": 5, "Archive": 0}

    # A move takes its unread message along.
    moved = await client.post(
        f"/api/messages/{ids['Message number 1']}/move", json={"role": "archive"}, headers=auth
    )
    assert moved.status_code == 200, moved.text
    assert await _unseen(client, auth, target) == {"INBOX": 4, "Archive": 1}

    # Expunged on the server: gone from the count after the next pass.
    await asyncio.to_thread(
        imap_client.run,
        dovecot,
        target.user,
        "INBOX",
        ("STORE", "1:*", "+FLAGS", "(\\Deleted)"),
    )
    await engine.sync_account(target.tenant_id, target.account_id)
    assert await _unseen(client, auth, target) == {"INBOX": 0, "Archive": 1}


async def test_the_recount_reads_only_unread_rows(
    engine: SyncEngine, target: SyncTarget, dovecot: DovecotServer
) -> None:
    """The recount's condition is the partial index's: it reads the unread rows only."""
    await asyncio.to_thread(
        imap_client.append, dovecot, target.user, "INBOX", [make_message(n)[1] for n in range(3)]
    )
    await engine.sync_account(target.tenant_id, target.account_id)
    async with engine.sessionmaker() as session:
        inbox_id = await session.scalar(
            select(Mailbox.id).where(Mailbox.tenant_id == target.tenant_id, Mailbox.name == "INBOX")
        )
        count = (
            select(func.count())
            .select_from(Message)
            .where(Message.tenant_id == target.tenant_id, Message.mailbox_id == inbox_id, UNSEEN)
        )
        sql = count.compile(
            dialect=session.get_bind().dialect, compile_kwargs={"literal_binds": True}
        )
        # Any other index (or the table) would do on a table this small: take them away.
        await session.execute(text("SET LOCAL enable_seqscan = off"))
        plan = [row[0] for row in await session.execute(text(f"EXPLAIN {sql}"))]
        assert await session.scalar(count) == 3
    assert any("ix_messages_unseen" in line for line in plan), plan
