"""The sync API and the arq job behind it, run by a real arq worker on the test Redis."""

import asyncio
import uuid
from typing import Any

import httpx
from arq.connections import ArqRedis
from arq.worker import Worker
from fastapi import FastAPI
from sqlalchemy import func as sql_func
from sqlalchemy import select

from mailsvc.models import Message
from mailsvc.runtime import Runtime
from mailsvc.sync.engine import SyncEngine
from mailsvc.sync.tasks import sync_job_function
from tests.fixtures import imap_client
from tests.fixtures.app import TokenFactory
from tests.fixtures.dovecot import DovecotServer
from tests.fixtures.mail import SyncTarget
from tests.sync.messages import make_message


async def _run_worker(app: FastAPI, engine: SyncEngine) -> None:
    state: Runtime = app.state.mailsvc
    ctx: dict[str, Any] = {"sync_engine": engine, "sessionmaker": state.sessionmaker}
    worker = Worker(
        functions=[sync_job_function()],
        redis_pool=ArqRedis(connection_pool=state.redis.connection_pool),
        burst=True,
        handle_signals=False,
        poll_delay=0.05,
        ctx=ctx,
    )
    # Burst mode returns once the queue is empty. Not `worker.close()`: it would close
    # the app's shared Redis pool (with a deprecated call, an error under pytest).
    await worker.main()


async def _message_ids(engine: SyncEngine, target: SyncTarget) -> set[uuid.UUID]:
    async with engine.sessionmaker() as session:
        rows = await session.scalars(
            select(Message.id).where(Message.account_id == target.account_id)
        )
        return set(rows.all())


async def _stored(engine: SyncEngine, target: SyncTarget) -> int:
    async with engine.sessionmaker() as session:
        count = await session.scalar(
            select(sql_func.count()).where(Message.account_id == target.account_id)
        )
    return int(count or 0)


async def test_request_sync_queues_a_job_that_a_worker_runs(
    app: FastAPI,
    client: httpx.AsyncClient,
    auth: dict[str, str],
    engine: SyncEngine,
    target: SyncTarget,
    dovecot: DovecotServer,
) -> None:
    await asyncio.to_thread(
        imap_client.append, dovecot, target.user, "INBOX", [make_message(i)[1] for i in range(12)]
    )
    # Creating the account queued its initial sync already; asking again is not lost.
    response = await client.post(f"/api/sync/imap/{target.account_id}", headers=auth)
    assert response.status_code == 202
    body = response.json()
    assert body["job_id"] == f"sync:{target.account_id}"
    assert body["queued"] is False
    assert body["status_url"] == f"/api/sync/status/{target.account_id}"

    await _run_worker(app, engine)
    assert await _stored(engine, target) == 12

    status = (await client.get(body["status_url"], headers=auth)).json()
    assert status["state"] == "connected"
    assert status["messages_synced"] == status["messages_total"] == 12
    inbox = next(m for m in status["mailboxes"] if m["role"] == "inbox")
    assert inbox["sync_state"] == "synced"
    assert inbox["messages_synced"] == 12
    assert status["idle"] == {"connected": False, "mailboxes": [], "since": None}

    mailboxes = (
        await client.get(f"/api/accounts/{target.account_id}/mailboxes", headers=auth)
    ).json()
    assert mailboxes["items"][0]["name"] == "INBOX"
    assert {m["role"] for m in mailboxes["items"]} >= {"inbox", "sent", "drafts", "trash", "junk"}


async def test_full_resync_refetches_everything(
    app: FastAPI,
    client: httpx.AsyncClient,
    auth: dict[str, str],
    engine: SyncEngine,
    target: SyncTarget,
    dovecot: DovecotServer,
) -> None:
    await asyncio.to_thread(
        imap_client.append, dovecot, target.user, "INBOX", [make_message(i)[1] for i in range(4)]
    )
    await _run_worker(app, engine)
    before = await _message_ids(engine, target)
    assert len(before) == 4
    response = await client.post(
        f"/api/sync/imap/{target.account_id}", headers=auth, params={"full": "true"}
    )
    assert response.json()["queued"] is True
    await _run_worker(app, engine)
    after = await _message_ids(engine, target)
    # A full resync drops what was stored and fetches it again: new rows, same count.
    assert len(after) == 4
    assert not before & after


async def test_sync_routes_answer_404_for_another_tenant(
    client: httpx.AsyncClient, target: SyncTarget, make_token: TokenFactory
) -> None:
    intruder = {"Authorization": f"Bearer {make_token('other-' + uuid.uuid4().hex[:6])}"}
    for method, path in (
        ("POST", f"/api/sync/imap/{target.account_id}"),
        ("GET", f"/api/sync/status/{target.account_id}"),
        ("GET", f"/api/accounts/{target.account_id}/mailboxes"),
    ):
        response = await client.request(method, path, headers=intruder)
        assert response.status_code == 404, (method, path)
        assert response.json()["code"] == "account_not_found"
