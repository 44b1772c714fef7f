"""`GET /api/sync/status/{id}`: a first mirror is listable before it is searchable.

The api process never indexes: what a sync stores waits in `search_queue` until the
worker's indexer takes it (here: the same indexer, drained in-process). Until then
`messages_indexed` trails `messages_synced`, per mailbox and in total, and the
account's `account.indexed` event is sent once, when both are complete.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx
from fastapi import FastAPI
from sqlalchemy import select

from mailsvc.models import Change
from mailsvc.runtime import Runtime
from mailsvc.sync.engine import SyncEngine
from mailsvc.sync.idle_status import idle_status_key, idle_status_value
from mailsvc.sync.schemas import SyncStatus
from mailsvc.sync.service import SyncProgress
from tests.fixtures import imap_client
from tests.fixtures.app import remember_secret
from tests.fixtures.dovecot import DovecotServer
from tests.fixtures.mail import SyncTarget, register_account
from tests.fixtures.search import make_searchable
from tests.fixtures.smtp_server import SmtpRelay
from tests.sync.messages import make_message


async def _status(
    client: httpx.AsyncClient, auth: dict[str, str], target: SyncTarget
) -> dict[str, Any]:
    response = await client.get(f"/api/sync/status/{target.account_id}", headers=auth)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def _counts(body: dict[str, Any]) -> dict[str, tuple[int, int]]:
    """(messages_synced, messages_indexed) of the total and each mailbox with mail."""
    counts = {"total": (body["messages_synced"], body["messages_indexed"])}
    for mailbox in body["mailboxes"]:
        if mailbox["messages_synced"]:
            counts[mailbox["name"]] = (mailbox["messages_synced"], mailbox["messages_indexed"])
    return counts


async def _indexed_events(engine: SyncEngine, target: SyncTarget) -> list[dict[str, Any]]:
    async with engine.sessionmaker() as session:
        payloads = await session.scalars(
            select(Change.payload)
            .where(
                Change.tenant_id == target.tenant_id,
                Change.account_id == target.account_id,
                Change.type == "account.indexed",
            )
            .order_by(Change.seq)
        )
        return list(payloads.all())


async def test_messages_indexed_trails_messages_synced_until_the_indexer_ran(
    app: FastAPI,
    client: httpx.AsyncClient,
    auth: dict[str, str],
    engine: SyncEngine,
    target: SyncTarget,
    dovecot: DovecotServer,
) -> None:
    await asyncio.to_thread(
        imap_client.append, dovecot, target.user, "INBOX", [make_message(i)[1] for i in range(7)]
    )
    await asyncio.to_thread(
        imap_client.append, dovecot, target.user, "Sent", [make_message(i)[1] for i in range(3)]
    )
    await engine.sync_account(target.tenant_id, target.account_id)

    # Stored and listable; nothing indexed yet, and not announced as searchable.
    assert _counts(await _status(client, auth, target)) == {
        "total": (10, 0),
        "INBOX": (7, 0),
        "Sent": (3, 0),
    }
    listed = await client.get("/api/messages", headers=auth, params={"limit": 100})
    assert len(listed.json()["items"]) == 10
    assert await _indexed_events(engine, target) == []

    await make_searchable(app, target.tenant_id)

    assert _counts(await _status(client, auth, target)) == {
        "total": (10, 10),
        "INBOX": (7, 7),
        "Sent": (3, 3),
    }
    # The same counts on the mailbox list, which shares the mailbox body.
    mailboxes = (
        await client.get(f"/api/accounts/{target.account_id}/mailboxes", headers=auth)
    ).json()["items"]
    assert {m["name"]: m["messages_indexed"] for m in mailboxes if m["messages_synced"]} == {
        "INBOX": 7,
        "Sent": 3,
    }
    assert await _indexed_events(engine, target) == [
        {"account_id": str(target.account_id), "messages_indexed": 10}
    ]

    # New mail is listable before it is searchable again; the event is not repeated.
    await asyncio.to_thread(
        imap_client.append, dovecot, target.user, "INBOX", [make_message(50)[1]]
    )
    await engine.sync_account(target.tenant_id, target.account_id)
    assert _counts(await _status(client, auth, target))["INBOX"] == (8, 7)
    await make_searchable(app, target.tenant_id)
    assert _counts(await _status(client, auth, target))["INBOX"] == (8, 8)
    assert len(await _indexed_events(engine, target)) == 1


async def test_a_first_mirror_with_nothing_to_index_is_announced_by_the_sync(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    engine: SyncEngine,
    target: SyncTarget,
) -> None:
    # No message, so no indexer batch will ever name the account: the pass that
    # completes the first mirror is the one to say it is searchable.
    await engine.sync_account(target.tenant_id, target.account_id)
    assert await _indexed_events(engine, target) == [
        {"account_id": str(target.account_id), "messages_indexed": 0}
    ]
    assert _counts(await _status(client, auth, target)) == {"total": (0, 0)}

    await engine.sync_account(target.tenant_id, target.account_id)
    assert len(await _indexed_events(engine, target)) == 1


async def test_the_pass_completing_the_mirror_announces_what_the_indexer_finished_first(
    app: FastAPI,
    engine: SyncEngine,
    target: SyncTarget,
    dovecot: DovecotServer,
) -> None:
    await asyncio.to_thread(
        imap_client.append, dovecot, target.user, "INBOX", [make_message(i)[1] for i in range(4)]
    )
    # INBOX first: the first mirror is not complete while the other mailboxes wait.
    await engine.sync_account(target.tenant_id, target.account_id, mailboxes=["INBOX"])
    await make_searchable(app, target.tenant_id)
    assert await _indexed_events(engine, target) == []

    # This pass stores nothing (the other mailboxes are empty), so no indexer batch
    # follows it: it must send the event itself.
    report = await engine.sync_account(target.tenant_id, target.account_id)
    assert not report.changed
    assert await _indexed_events(engine, target) == [
        {"account_id": str(target.account_id), "messages_indexed": 4}
    ]


async def test_statuses_of_several_accounts_equal_each_accounts_status(
    app: FastAPI,
    client: httpx.AsyncClient,
    auth: dict[str, str],
    engine: SyncEngine,
    target: SyncTarget,
    dovecot: DovecotServer,
    smtp_relay: SmtpRelay,
) -> None:
    """The console's accounts table reads a page of statuses in one statement; each
    must be what `GET /api/sync/status/{id}` says, mid-index included."""
    await asyncio.to_thread(
        imap_client.append, dovecot, target.user, "INBOX", [make_message(i)[1] for i in range(4)]
    )
    await engine.sync_account(target.tenant_id, target.account_id)
    other_user = dovecot.add_user(f"status-{uuid.uuid4().hex[:8]}", "pw-" + uuid.uuid4().hex)
    remember_secret(other_user.password)
    unsynced = await register_account(client, auth, dovecot, smtp_relay, other_user)
    state: Runtime = app.state.mailsvc
    progress = SyncProgress(state.reads, target.tenant_id, redis=state.redis)
    # An id that is no account of this tenant yields nothing.
    foreign = uuid.uuid4()
    # One of them watched over IDLE, as a watcher records it.
    await state.redis.set(
        idle_status_key(target.account_id),
        idle_status_value(owner_id="test", mailboxes=["INBOX"]),
        px=60_000,
    )

    statuses = await progress.statuses([unsynced, foreign, target.account_id])

    assert [status.account_id for status in statuses] == [unsynced, target.account_id]
    for status in statuses:
        single = SyncStatus.model_validate_json(await progress.status(status.account_id))
        assert status == single
    assert (statuses[1].messages_synced, statuses[1].messages_indexed) == (4, 0)
    assert statuses[0].mailboxes == []
    assert (statuses[0].idle.connected, statuses[1].idle.mailboxes) == (False, ["INBOX"])
