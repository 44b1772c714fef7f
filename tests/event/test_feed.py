"""The change feed: every change exactly once, in commit order, per tenant, with retention."""

from __future__ import annotations

import asyncio
import secrets
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from fastapi import FastAPI
from sqlalchemy import func, select, update

from mailsvc.event.repository import ChangeRepository
from mailsvc.event.retention import trim_change_log
from mailsvc.models import Change
from mailsvc.runtime import Runtime
from mailsvc.sync.engine import SyncEngine
from tests.fixtures import imap_client
from tests.fixtures.app import TokenFactory
from tests.fixtures.dovecot import DovecotServer
from tests.fixtures.mail import SyncTarget, register_account
from tests.fixtures.smtp_server import SmtpRelay
from tests.sync.messages import make_message

Headers = dict[str, str]


async def _read_all(
    client: httpx.AsyncClient, auth: Headers, *, since: str, limit: int, **params: Any
) -> tuple[list[dict[str, Any]], str]:
    events: list[dict[str, Any]] = []
    while True:
        response = await client.get(
            "/api/changes", params={"since": since, "limit": limit, **params}, headers=auth
        )
        assert response.status_code == 200, response.text
        page = response.json()
        events += page["events"]
        since = page["next_cursor"]
        if not page["has_more"]:
            return events, since


async def _account(
    client: httpx.AsyncClient, auth: Headers, dovecot: DovecotServer, relay: SmtpRelay
) -> uuid.UUID:
    user = dovecot.add_user(f"feed-{secrets.token_hex(5)}", secrets.token_urlsafe(10))
    return await register_account(client, auth, dovecot, relay, user)


async def _append(app: FastAPI, tenant_id: str, account_id: uuid.UUID, count: int) -> None:
    state: Runtime = app.state.mailsvc
    for number in range(count):
        async with state.sessionmaker.begin() as session:
            await ChangeRepository(session, tenant_id).append(
                account_id,
                "sync.completed",
                {"account_id": str(account_id), "new_messages": number, "updated": 0, "deleted": 0},
            )


async def test_any_page_size_reads_each_change_once_while_mail_keeps_arriving(
    app: FastAPI,
    client: httpx.AsyncClient,
    auth: Headers,
    engine: SyncEngine,
    target: SyncTarget,
    dovecot: DovecotServer,
) -> None:
    async def mail_keeps_arriving() -> None:
        for batch in range(5):
            messages = [make_message(batch * 4 + n)[1] for n in range(4)]
            await asyncio.to_thread(imap_client.append, dovecot, target.user, "INBOX", messages)
            await engine.sync_account(target.tenant_id, target.account_id)

    # Mirrored first, so every later message is new mail with its `message.created`.
    await engine.sync_account(target.tenant_id, target.account_id)
    for rounds, limit in enumerate((1, 3, 50), start=1):
        arriving = asyncio.create_task(mail_keeps_arriving())
        cursor = "0"
        seen: list[dict[str, Any]] = []
        while not arriving.done():
            events, cursor = await _read_all(client, auth, since=cursor, limit=limit)
            seen += events
            await asyncio.sleep(0.01)
        await arriving
        events, cursor = await _read_all(client, auth, since=cursor, limit=limit)
        seen += events
        state: Runtime = app.state.mailsvc
        async with state.sessionmaker() as session:
            stored = await session.scalar(
                select(func.count()).where(Change.tenant_id == target.tenant_id)
            )
        assert len(seen) == stored, limit
        assert len({event["id"] for event in seen}) == len(seen), limit
        seqs = [event["seq"] for event in seen if event["account_id"] == str(target.account_id)]
        assert seqs == sorted(seqs), limit
        created = [event for event in seen if event["type"] == "message.created"]
        assert len(created) == 20 * rounds, limit


async def test_a_change_committed_late_is_not_skipped(
    app: FastAPI,
    client: httpx.AsyncClient,
    auth: Headers,
    tenant_id: str,
    target: SyncTarget,
    dovecot: DovecotServer,
    smtp_relay: SmtpRelay,
) -> None:
    _, start = await _read_all(client, auth, since="0", limit=100)
    state: Runtime = app.state.mailsvc
    async with state.sessionmaker() as slow:
        # This transaction writes first (its row gets the smaller id) and commits last.
        await ChangeRepository(slow, tenant_id).append(
            target.account_id,
            "sync.completed",
            {"account_id": str(target.account_id), "new_messages": 1, "updated": 0, "deleted": 0},
        )
        other = await _account(client, auth, dovecot, smtp_relay)
        await _append(app, tenant_id, other, 2)
        # While the slow one is open, the later commits are held back, not skipped.
        events, cursor = await _read_all(client, auth, since=start, limit=100)
        assert events == []
        assert cursor == start
        await slow.commit()
    events, _ = await _read_all(client, auth, since=cursor, limit=100)
    assert [(e["account_id"], e["type"]) for e in events] == [
        (str(target.account_id), "sync.completed"),
        (str(other), "account.created"),
        (str(other), "sync.completed"),
        (str(other), "sync.completed"),
    ]


async def test_a_tenant_reads_only_its_own_changes_and_filters_work(
    app: FastAPI,
    client: httpx.AsyncClient,
    auth: Headers,
    tenant_id: str,
    make_token: TokenFactory,
    dovecot: DovecotServer,
    smtp_relay: SmtpRelay,
) -> None:
    other_tenant = f"{tenant_id}-other"
    other_auth = {"Authorization": f"Bearer {make_token(other_tenant)}"}
    mine = await _account(client, auth, dovecot, smtp_relay)
    second = await _account(client, auth, dovecot, smtp_relay)
    theirs = await _account(client, other_auth, dovecot, smtp_relay)
    await _append(app, tenant_id, mine, 3)
    await _append(app, other_tenant, theirs, 2)
    events, _ = await _read_all(client, auth, since="0", limit=10)
    assert {e["account_id"] for e in events} == {str(mine), str(second)}
    events, _ = await _read_all(client, other_auth, since="0", limit=10)
    assert {e["account_id"] for e in events} == {str(theirs)}

    only, _ = await _read_all(client, auth, since="0", limit=10, account_id=str(second))
    assert [e["type"] for e in only] == ["account.created"]
    typed, _ = await _read_all(
        client, auth, since="0", limit=10, types="sync.completed,account.deleted"
    )
    assert [(e["account_id"], e["type"]) for e in typed] == [(str(mine), "sync.completed")] * 3
    bad = await client.get(
        "/api/changes", params={"since": "0", "types": "message.exploded"}, headers=auth
    )
    assert bad.status_code == 422
    assert bad.json()["errors"][0]["field"] == "query.types"
    # Not a feed position at all: the parameter's schema refuses it.
    garbage = await client.get("/api/changes", params={"since": "yesterday"}, headers=auth)
    assert garbage.status_code == 422
    assert garbage.json()["errors"][0]["field"] == "query.since"


async def test_a_cursor_older_than_retention_is_gone(
    app: FastAPI,
    client: httpx.AsyncClient,
    auth: Headers,
    tenant_id: str,
    dovecot: DovecotServer,
    smtp_relay: SmtpRelay,
) -> None:
    account = await _account(client, auth, dovecot, smtp_relay)
    await _append(app, tenant_id, account, 2)
    events, _ = await _read_all(client, auth, since="0", limit=10)
    old_cursor = events[0]["id"]
    state: Runtime = app.state.mailsvc
    async with state.sessionmaker.begin() as session:
        # The first two changes are older than the retention window.
        await session.execute(
            update(Change)
            .where(Change.tenant_id == tenant_id, Change.seq <= 2)
            .values(created_at=datetime.now(UTC) - timedelta(days=400))
        )
    trimmed = await trim_change_log(
        {"settings": state.settings, "sessionmaker": state.sessionmaker}
    )
    assert trimmed >= 2
    gone = await client.get("/api/changes", params={"since": old_cursor}, headers=auth)
    assert gone.status_code == 410
    assert gone.json()["code"] == "cursor_expired"
    # From the start, the feed holds what is left (account.created, two syncs: seq 3).
    events, _ = await _read_all(client, auth, since="0", limit=10)
    assert [e["seq"] for e in events] == [3]


async def test_an_accounts_changes_keep_their_seq_order_whatever_the_transaction_ids(
    app: FastAPI, client: httpx.AsyncClient, auth: Headers, tenant_id: str, target: SyncTarget
) -> None:
    _, start = await _read_all(client, auth, since="0", limit=100)
    state: Runtime = app.state.mailsvc
    async with state.sessionmaker() as early:
        # This transaction has its id before the other starts, but appends after it.
        await early.execute(select(func.pg_current_xact_id()))
        await _append(app, tenant_id, target.account_id, 1)
        await ChangeRepository(early, tenant_id).append(
            target.account_id,
            "sync.completed",
            {"account_id": str(target.account_id), "new_messages": 9, "updated": 0, "deleted": 0},
        )
        await early.commit()
    events, _ = await _read_all(client, auth, since=start, limit=100)
    assert [e["data"]["new_messages"] for e in events] == [0, 9]
    seqs = [e["seq"] for e in events]
    assert seqs == sorted(seqs)
