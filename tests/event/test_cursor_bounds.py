"""Cursors the feed never issued: 400 for a position past the newest event, 410 for
one retention trimmed, and the newest event's id stays usable whatever was trimmed."""

from __future__ import annotations

import secrets
import uuid
from datetime import UTC, datetime, timedelta

import httpx
from fastapi import FastAPI
from sqlalchemy import update

from mailsvc.event.retention import trim_change_log
from mailsvc.models import Change
from mailsvc.runtime import Runtime
from tests.fixtures.dovecot import DovecotServer
from tests.fixtures.mail import register_account
from tests.fixtures.smtp_server import SmtpRelay

Headers = dict[str, str]


async def _account_with_events(
    client: httpx.AsyncClient, auth: Headers, dovecot: DovecotServer, relay: SmtpRelay
) -> uuid.UUID:
    """An account whose creation is the tenant's one event."""
    user = dovecot.add_user(f"cursor-{secrets.token_hex(5)}", secrets.token_urlsafe(10))
    return await register_account(client, auth, dovecot, relay, user)


async def _newest_id(client: httpx.AsyncClient, auth: Headers) -> str:
    page = (await client.get("/api/changes", params={"since": "0"}, headers=auth)).json()
    return str(page["events"][-1]["id"])


def _beyond(position: str) -> list[str]:
    """Positions after `position`: a later transaction, and a later row of the same one."""
    txid, _, change_id = position.partition("-")
    return [f"{int(txid) + 10**9}-{change_id}", f"{txid}-{int(change_id) + 10**9}"]


async def test_a_feed_cursor_past_the_newest_event_is_400(
    client: httpx.AsyncClient, auth: Headers, dovecot: DovecotServer, smtp_relay: SmtpRelay
) -> None:
    await _account_with_events(client, auth, dovecot, smtp_relay)
    newest = await _newest_id(client, auth)
    for cursor in [*_beyond(newest), "999999999999-99"]:
        response = await client.get("/api/changes", params={"since": cursor}, headers=auth)
        assert response.status_code == 400, (cursor, response.text)
        assert response.json()["code"] == "cursor_not_issued"
    # What the feed did issue keeps working, filtered or not.
    for params in ({}, {"types": "message.created"}):
        same = await client.get("/api/changes", params={"since": newest, **params}, headers=auth)
        assert same.status_code == 200, same.text
        assert same.json() == {"events": [], "next_cursor": newest, "has_more": False}


async def test_a_tenant_without_events_accepts_only_the_start(
    client: httpx.AsyncClient, auth: Headers
) -> None:
    start = await client.get("/api/changes", params={"since": "0"}, headers=auth)
    assert start.json() == {"events": [], "next_cursor": "0-0", "has_more": False}
    for cursor in ("0-0", "0"):
        response = await client.get("/api/changes", params={"since": cursor}, headers=auth)
        assert response.status_code == 200
    response = await client.get("/api/changes", params={"since": "999999-99"}, headers=auth)
    assert response.status_code == 400
    assert response.json()["code"] == "cursor_not_issued"


async def test_an_sse_resume_point_past_the_newest_event_is_400(
    client: httpx.AsyncClient, auth: Headers, dovecot: DovecotServer, smtp_relay: SmtpRelay
) -> None:
    await _account_with_events(client, auth, dovecot, smtp_relay)
    future = _beyond(await _newest_id(client, auth))[0]
    by_header = await client.get("/api/events", headers={**auth, "Last-Event-ID": future})
    assert by_header.status_code == 400
    assert by_header.json()["code"] == "cursor_not_issued"
    assert "Last-Event-ID" in by_header.json()["detail"]
    by_query = await client.get("/api/events", params={"since": future}, headers=auth)
    assert by_query.status_code == 400
    assert by_query.json()["code"] == "cursor_not_issued"
    assert "since" in by_query.json()["detail"]


async def test_retention_keeps_410_and_the_newest_id_stays_usable(
    app: FastAPI,
    client: httpx.AsyncClient,
    auth: Headers,
    tenant_id: str,
    dovecot: DovecotServer,
    smtp_relay: SmtpRelay,
) -> None:
    await _account_with_events(client, auth, dovecot, smtp_relay)
    await _account_with_events(client, auth, dovecot, smtp_relay)
    page = (await client.get("/api/changes", params={"since": "0"}, headers=auth)).json()
    oldest, newest = page["events"][0]["id"], page["events"][-1]["id"]
    state: Runtime = app.state.mailsvc
    async with state.sessionmaker.begin() as session:
        await session.execute(
            update(Change)
            .where(Change.tenant_id == tenant_id)
            .values(created_at=datetime.now(UTC) - timedelta(days=400))
        )
    await trim_change_log({"settings": state.settings, "sessionmaker": state.sessionmaker})

    gone = await client.get("/api/changes", params={"since": oldest}, headers=auth)
    assert gone.status_code == 410
    assert gone.json()["code"] == "cursor_expired"
    sse_gone = await client.get("/api/events", headers={**auth, "Last-Event-ID": oldest})
    assert sse_gone.status_code == 410
    # Every event of the tenant is gone, yet the id of the last one read was issued.
    kept = await client.get("/api/changes", params={"since": newest}, headers=auth)
    assert kept.status_code == 200, kept.text
    assert kept.json()["events"] == []
    future = await client.get("/api/changes", params={"since": _beyond(newest)[0]}, headers=auth)
    assert future.status_code == 400
