"""OAuth2 accounts over time: tokens that expire, that many need at once, that are revoked.

Against oidc-provider, Dovecot's oauth2 passdb and the SMTP relay on loopback (both
validate every token by introspection). Access tokens here live a few seconds;
the test app refreshes them 1 s ahead of expiry (tests/fixtures/app.py).
"""

from __future__ import annotations

import asyncio
import secrets
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis
from fastapi import FastAPI

from mailsvc.account.logins import AccountLogins
from mailsvc.account.repository import AccountRepository
from mailsvc.config import Settings
from mailsvc.imap.errors import ImapAuthError
from mailsvc.kit.redis import create_redis
from mailsvc.models import Account
from mailsvc.runtime import Runtime
from mailsvc.sync.engine import SyncEngine
from mailsvc.sync.idle import IdleSupervisor
from mailsvc.sync.idle_status import idle_status
from tests.fixtures.dovecot import DovecotServer, TestMailUser
from tests.fixtures.oauth_accounts import (
    OAuthApp,
    RememberTokens,
    create_oauth_account,
    send_now,
    tokens_body,
)
from tests.fixtures.oauth_server import OAuthServer
from tests.fixtures.smtp_server import SmtpRelay
from tests.fixtures.waiting import eventually

TTL_SECONDS = 3


def _message(subject: str) -> bytes:
    return (
        f"From: a@example.test\r\nSubject: {subject}\r\n"
        f"Message-ID: <{secrets.token_hex(6)}@example.test>\r\n\r\nbody\r\n"
    ).encode()


async def _account(app: FastAPI, tenant_id: str, account_id: uuid.UUID) -> Account:
    state: Runtime = app.state.mailsvc
    async with state.sessionmaker() as session:
        account = await AccountRepository(session, tenant_id).get(account_id)
    assert account is not None
    return account


async def _subjects(
    client: httpx.AsyncClient, auth: dict[str, str], account_id: uuid.UUID
) -> set[str]:
    page = await client.get("/api/messages", params={"account_id": str(account_id)}, headers=auth)
    return {item["subject"] for item in page.json()["items"]}


async def _state_changes(
    client: httpx.AsyncClient, auth: dict[str, str], account_id: uuid.UUID
) -> list[dict[str, Any]]:
    feed = await client.get(
        "/api/changes",
        params={"since": "0", "account_id": str(account_id), "types": "account.state_changed"},
        headers=auth,
    )
    assert feed.status_code == 200, feed.text
    return [event["data"] for event in feed.json()["events"]]


def _expiry(tokens: dict[str, Any]) -> str:
    """When the token response's access token expires, as an API client would say it."""
    return (datetime.now(UTC) + timedelta(seconds=tokens["expires_in"])).isoformat()


def _expired() -> str:
    return (datetime.now(UTC) - timedelta(seconds=5)).isoformat()


@pytest.fixture
def short_tokens(oauth_server: OAuthServer) -> int:
    oauth_server.set_access_token_ttl(TTL_SECONDS)
    return TTL_SECONDS


async def test_tokens_expiring_during_idle_and_before_a_send_are_refreshed_in_time(
    app: FastAPI,
    client: httpx.AsyncClient,
    auth: dict[str, str],
    tenant_id: str,
    engine: SyncEngine,
    settings: Settings,
    redis: aioredis.Redis,
    oauth_app: OAuthApp,
    oauth_server: OAuthServer,
    oauth_dovecot: DovecotServer,
    oauth_smtp_relay: SmtpRelay,
    oauth_mail_user: TestMailUser,
    short_tokens: int,
    remember_account_tokens: RememberTokens,
) -> None:
    tokens = oauth_server.issue_tokens(oauth_app.client, oauth_mail_user.email)
    account_id = await create_oauth_account(
        client,
        auth,
        oauth_app,
        oauth_mail_user,
        tokens,
        expires_at=_expiry(tokens),
    )
    await engine.sync_account(tenant_id, account_id)
    state: Runtime = app.state.mailsvc
    supervisor_redis = create_redis(settings.required_redis_url)
    supervisor = IdleSupervisor(
        sessionmaker=state.sessionmaker,
        redis=supervisor_redis,
        engine=engine,
        logins=state.component(AccountLogins),
        settings=settings.model_copy(
            update={"idle_lease_ttl_seconds": 2.0, "idle_scan_interval_seconds": 0.3}
        ),
        owner_id=f"test-{secrets.token_hex(4)}",
        tenant_ids={tenant_id},
    )
    supervisor.start()
    try:

        async def watching() -> bool:
            return await idle_status(redis, account_id) is not None

        await eventually(watching, what="account in IDLE")
        # Several lifetimes of the token pass while the account sits in IDLE; each
        # delivery then makes the watcher sync on a new connection.
        for round_ in range(3):
            await asyncio.sleep(TTL_SECONDS + 0.5)
            subject = f"Pushed after expiry {round_}"
            await oauth_dovecot.adeliver(oauth_mail_user.username, _message(subject))

            async def arrived(subject: str = subject) -> bool:
                return subject in await _subjects(client, auth, account_id)

            await eventually(arrived, within=15, what=f"{subject} synced")
    finally:
        await supervisor.stop()
        await supervisor_redis.aclose()
    refreshes_in_idle = oauth_server.token_requests("refresh_token")
    assert refreshes_in_idle >= 3

    # The token has expired again; a send refreshes it before logging in.
    await asyncio.sleep(TTL_SECONDS + 0.5)
    other = oauth_dovecot.add_user(f"rcpt-{secrets.token_hex(5)}", secrets.token_urlsafe(12))
    entry = await send_now(
        app, client, auth, account_id, to=other.email, subject="Sent after expiry"
    )
    assert entry["status"] == "sent", entry
    assert entry["attempts"] == 1
    assert oauth_server.token_requests("refresh_token") == refreshes_in_idle + 1
    # Never a failed login on the way: no auth_error or connect_error, ever.
    states = [change["state"] for change in await _state_changes(client, auth, account_id)]
    assert set(states) == {"connected"}, states
    await remember_account_tokens(tenant_id)


async def test_twenty_operations_on_an_expired_token_cause_one_refresh(
    app: FastAPI,
    client: httpx.AsyncClient,
    auth: dict[str, str],
    tenant_id: str,
    settings: Settings,
    oauth_app: OAuthApp,
    oauth_server: OAuthServer,
    oauth_mail_user: TestMailUser,
    remember_account_tokens: RememberTokens,
) -> None:
    tokens = oauth_server.issue_tokens(oauth_app.client, oauth_mail_user.email)
    account_id = await create_oauth_account(
        client, auth, oauth_app, oauth_mail_user, tokens, expires_at=_expired()
    )
    # Creating it refreshed the expired token once, to check the logins with.
    assert oauth_server.token_requests("refresh_token") == 1
    oauth_server.reset_counts()
    async with app.state.mailsvc.sessionmaker.begin() as session:
        stored = await AccountRepository(session, tenant_id).get(account_id, for_update=True)
        assert stored is not None
        stored.oauth_expires_at = datetime.now(UTC) - timedelta(seconds=1)
    account = await _account(app, tenant_id, account_id)

    # Two processes' worth of logins (each its own Redis connection and in-process
    # refresh), ten operations each, all at once.
    state: Runtime = app.state.mailsvc
    redises = [create_redis(settings.required_redis_url) for _ in range(2)]
    processes = [
        AccountLogins(
            sessionmaker=state.sessionmaker, redis=r, secrets=state.secrets, settings=settings
        )
        for r in redises
    ]

    async def operation(logins: AccountLogins) -> list[bytes | bytearray]:
        async with logins.imap_session(account) as connection:
            return await connection.noop()

    try:
        await asyncio.gather(*(operation(logins) for logins in processes for _ in range(10)))
    finally:
        for logins, r in zip(processes, redises, strict=True):
            await logins.aclose()
            await r.aclose()
    assert oauth_server.token_requests("refresh_token") == 1
    assert oauth_server.token_requests() == 1
    await remember_account_tokens(tenant_id)


async def test_a_token_the_server_refuses_is_refreshed_and_tried_once_more(
    app: FastAPI,
    client: httpx.AsyncClient,
    auth: dict[str, str],
    tenant_id: str,
    oauth_app: OAuthApp,
    oauth_server: OAuthServer,
    oauth_mail_user: TestMailUser,
    short_tokens: int,
    remember_account_tokens: RememberTokens,
) -> None:
    tokens = oauth_server.issue_tokens(oauth_app.client, oauth_mail_user.email)
    # The application said nothing of expiry: the token is used until it is refused.
    account_id = await create_oauth_account(client, auth, oauth_app, oauth_mail_user, tokens)
    await asyncio.sleep(TTL_SECONDS + 0.5)
    logins: AccountLogins = app.state.mailsvc.component(AccountLogins)
    async with logins.imap_session(await _account(app, tenant_id, account_id)) as connection:
        await connection.noop()
    assert oauth_server.token_requests("refresh_token") == 1
    await remember_account_tokens(tenant_id)


async def test_a_revoked_grant_parks_the_account_until_new_tokens_arrive(
    app: FastAPI,
    client: httpx.AsyncClient,
    auth: dict[str, str],
    tenant_id: str,
    engine: SyncEngine,
    oauth_app: OAuthApp,
    oauth_server: OAuthServer,
    oauth_dovecot: DovecotServer,
    oauth_smtp_relay: SmtpRelay,
    oauth_mail_user: TestMailUser,
    short_tokens: int,
    remember_account_tokens: RememberTokens,
) -> None:
    tokens = oauth_server.issue_tokens(oauth_app.client, oauth_mail_user.email)
    account_id = await create_oauth_account(
        client,
        auth,
        oauth_app,
        oauth_mail_user,
        tokens,
        expires_at=_expiry(tokens),
    )
    await engine.sync_account(tenant_id, account_id)
    assert oauth_server.revoke_subject(oauth_mail_user.email) >= 1
    await asyncio.sleep(TTL_SECONDS + 0.5)

    with pytest.raises(ImapAuthError, match="invalid_grant"):
        await engine.sync_account(tenant_id, account_id)
    account = (await client.get(f"/api/accounts/{account_id}", headers=auth)).json()
    assert account["state"] == "auth_error"
    assert "invalid_grant" in account["last_error"]
    changes = await _state_changes(client, auth, account_id)
    assert changes[-1]["state"] == "auth_error"
    assert "invalid_grant" in changes[-1]["error"]
    assert oauth_server.token_requests("refresh_token") == 1

    # Nothing retries against the provider from now on: syncs, sends, a while of time.
    for _ in range(3):
        with pytest.raises(ImapAuthError):
            await engine.sync_account(tenant_id, account_id)
    entry = await send_now(
        app, client, auth, account_id, to=oauth_mail_user.email, subject="Not while parked"
    )
    assert entry["status"] == "failed", entry
    assert "invalid_grant" in entry["last_error"]
    await asyncio.sleep(1)
    # The code exchange of issue_tokens and the one refused refresh, nothing since.
    assert oauth_server.token_requests("refresh_token") == 1
    assert oauth_server.token_requests() == 2
    assert len(await _state_changes(client, auth, account_id)) == len(changes)

    # New tokens (the user consented again) bring it back.
    fresh = oauth_server.issue_tokens(oauth_app.client, oauth_mail_user.email)
    updated = await client.put(
        f"/api/accounts/{account_id}",
        headers=auth,
        json={"email": oauth_mail_user.email, "auth": tokens_body(oauth_app, fresh)},
    )
    assert updated.status_code == 200, updated.text
    assert updated.json()["state"] == "connecting"
    await oauth_dovecot.adeliver(oauth_mail_user.username, _message("After reconnecting"))
    await engine.sync_account(tenant_id, account_id)
    assert "After reconnecting" in await _subjects(client, auth, account_id)
    account = (await client.get(f"/api/accounts/{account_id}", headers=auth)).json()
    assert account["state"] == "connected"
    await remember_account_tokens(tenant_id)


async def test_bad_tokens_and_foreign_apps_are_refused_and_nothing_is_stored(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    make_token: Any,
    oauth_app: OAuthApp,
    oauth_server: OAuthServer,
    oauth_mail_user: TestMailUser,
) -> None:
    async def create(body_auth: dict[str, Any], headers: dict[str, str] = auth) -> httpx.Response:
        return await client.post(
            "/api/accounts",
            headers=headers,
            json={"email": oauth_mail_user.email, "auth": body_auth},
        )

    garbage = {"access_token": "not-a-token", "refresh_token": "nor-this"}
    refused = await create(tokens_body(oauth_app, garbage))
    assert refused.status_code == 422
    assert refused.json()["code"] == "imap_login_failed"

    expired_garbage = await create(tokens_body(oauth_app, garbage, expires_at=_expired()))
    assert expired_garbage.status_code == 422
    assert expired_garbage.json()["code"] == "oauth_grant_refused"
    assert "invalid_grant" in expired_garbage.json()["detail"]

    oauth_server.fail_token_endpoint("500")
    unavailable = await create(tokens_body(oauth_app, garbage, expires_at=_expired()))
    assert unavailable.status_code == 502
    assert unavailable.json()["code"] == "oauth_provider_unavailable"
    oauth_server.fail_token_endpoint(None)

    no_refresh = await create(
        {"type": "oauth2", "app_id": oauth_app.id, "access_token": "x", "expires_at": _expired()}
    )
    assert no_refresh.json()["code"] == "oauth_token_expired"

    other = {"Authorization": f"Bearer {make_token(f't-{secrets.token_hex(5)}')}"}
    foreign = await create(tokens_body(oauth_app, garbage), headers=other)
    assert foreign.status_code == 404
    assert foreign.json()["code"] == "oauth_app_not_found"

    both = await client.post(
        "/api/accounts",
        headers=auth,
        json={
            "email": oauth_mail_user.email,
            "auth": tokens_body(oauth_app, garbage),
            "imap": {"host": "127.0.0.1", "port": 993, "username": "u", "password": "p"},
        },
    )
    assert both.status_code == 422
    assert both.json()["errors"][0]["field"] == "body.imap"
    neither = await client.post("/api/accounts", headers=auth, json={"email": "x@example.test"})
    assert neither.status_code == 422
    assert {e["field"] for e in neither.json()["errors"]} == {"body.imap", "body.smtp"}

    listed = await client.get("/api/accounts", headers=auth)
    assert listed.json()["items"] == []
    for response in (refused, expired_garbage, unavailable, foreign):
        assert "not-a-token" not in response.text
        assert "nor-this" not in response.text
