"""Connecting a mailbox through the provider's consent screen, end to end on loopback.

The provider is oidc-provider (tests/fixtures/oauth_server.py), Dovecot and the SMTP
relay accept only what it issued; a real HTTP client plays the user's browser and
follows every redirect: mailsvc -> provider login and consent -> mailsvc's callback
-> the application's return URL.
"""

from __future__ import annotations

import secrets
import uuid

import httpx
from fastapi import FastAPI

from mailsvc.sync.engine import SyncEngine
from tests.fixtures.dovecot import DovecotServer, TestMailUser
from tests.fixtures.oauth_accounts import (
    CALLBACK_PATH,
    OAuthApp,
    RememberTokens,
    browser,
    send_now,
)
from tests.fixtures.oauth_server import OAuthServer, consent
from tests.fixtures.smtp_server import SmtpRelay

RETURN_URL = "https://app.example.test/mail/connected"


async def _authorize(
    client: httpx.AsyncClient, auth: dict[str, str], app: OAuthApp, **fields: object
) -> str:
    response = await client.post(
        "/api/oauth/authorize",
        headers=auth,
        json={"app_id": app.id, "return_url": RETURN_URL, **fields},
    )
    assert response.status_code == 200, response.text
    url: str = response.json()["authorization_url"]
    return url


async def _through_consent(authorize_url: str, user: TestMailUser) -> httpx.URL:
    """Consent as `user` and follow redirects through mailsvc's callback to the app."""
    async with browser() as http:
        return await consent(http, authorize_url, login=user.email, stop_at=RETURN_URL)


async def _account_ids(client: httpx.AsyncClient, auth: dict[str, str]) -> list[str]:
    page = (await client.get("/api/accounts", headers=auth)).json()
    return [item["id"] for item in page["items"]]


async def test_a_consented_account_syncs_and_sends_over_xoauth2(
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
    remember_account_tokens: RememberTokens,
) -> None:
    oauth_dovecot.deliver(
        oauth_mail_user.email,
        b"From: a@example.test\r\nSubject: Before consent\r\nMessage-ID: <c1@example.test>\r\n"
        b"\r\nwaiting\r\n",
    )
    url = await _authorize(
        client, auth, oauth_app, state="user-42", login_hint=oauth_mail_user.email
    )
    assert "code_challenge_method=S256" in url

    back = await _through_consent(url, oauth_mail_user)

    assert back.params["state"] == "user-42"
    assert "error" not in back.params, back
    account_id = back.params["account_id"]
    account = (await client.get(f"/api/accounts/{account_id}", headers=auth)).json()
    assert account["auth_type"] == "oauth2"
    assert account["oauth_app_id"] == oauth_app.id
    assert account["email"] == oauth_mail_user.email
    assert account["imap"]["username"] == oauth_mail_user.email
    await remember_account_tokens(tenant_id)

    # Synced over IMAP with the token (Dovecot offers both mechanisms; XOAUTH2 is
    # preferred)...
    await engine.sync_account(tenant_id, uuid.UUID(account_id))
    logins = oauth_dovecot.log_path.read_text(errors="replace")
    assert f"Login: user=<{oauth_mail_user.username}>, method=XOAUTH2" in logins
    listed = await client.get("/api/messages", params={"account_id": account_id}, headers=auth)
    assert [m["subject"] for m in listed.json()["items"]] == ["Before consent"]
    assert (await client.get(f"/api/accounts/{account_id}", headers=auth)).json()[
        "state"
    ] == "connected"

    # ... and sent over SMTP with XOAUTH2, which Dovecot and the relay both offer.
    other = oauth_dovecot.add_user(f"rcpt-{secrets.token_hex(5)}", secrets.token_urlsafe(12))
    entry = await send_now(
        app, client, auth, account_id, to=other.email, subject="Sent with a token"
    )
    assert entry["status"] == "sent", entry
    (received,) = [m for m in oauth_smtp_relay.received if b"Sent with a token" in m.data]
    assert received.auth_mechanism == "XOAUTH2"
    # One code exchange; the fresh token needed no refresh.
    assert oauth_server.token_requests("authorization_code") == 1
    assert oauth_server.token_requests("refresh_token") == 0


async def test_consenting_again_gives_the_same_account_new_tokens(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    tenant_id: str,
    oauth_app: OAuthApp,
    oauth_mail_user: TestMailUser,
    remember_account_tokens: RememberTokens,
) -> None:
    first = await _through_consent(await _authorize(client, auth, oauth_app), oauth_mail_user)
    again = await _through_consent(
        await _authorize(client, auth, oauth_app, account_id=first.params["account_id"]),
        oauth_mail_user,
    )
    plain = await _through_consent(await _authorize(client, auth, oauth_app), oauth_mail_user)
    await remember_account_tokens(tenant_id)
    assert first.params["account_id"] == again.params["account_id"] == plain.params["account_id"]
    assert await _account_ids(client, auth) == [first.params["account_id"]]


async def test_a_forged_or_replayed_state_is_refused_and_nothing_is_stored(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    live_mailsvc: str,
    oauth_app: OAuthApp,
    oauth_mail_user: TestMailUser,
) -> None:
    url = await _authorize(client, auth, oauth_app)
    async with browser() as http:
        callback = await consent(
            http, url, login=oauth_mail_user.email, stop_at=live_mailsvc + CALLBACK_PATH
        )
        forged = callback.copy_set_param("state", secrets.token_urlsafe(32))
        refused = await http.get(str(forged))
        assert refused.status_code == 400
        assert refused.headers["content-type"] == "application/problem+json"
        assert refused.json()["code"] == "oauth_state_invalid"
        assert "code=" not in refused.text

        first = await http.get(str(callback))
        assert first.status_code == 303
        assert "account_id=" in first.headers["location"]
        replayed = await http.get(str(callback))
        assert replayed.status_code == 400
        assert replayed.json()["code"] == "oauth_state_invalid"
        missing = await http.get(live_mailsvc + CALLBACK_PATH, params={"code": "x"})
        assert missing.json()["code"] == "oauth_state_invalid"
    assert len(await _account_ids(client, auth)) == 1


async def test_another_tenants_app_or_account_cannot_be_used(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    make_token: object,
    oauth_app: OAuthApp,
    oauth_mail_user: TestMailUser,
) -> None:
    other = {"Authorization": f"Bearer {make_token(f't-{secrets.token_hex(5)}')}"}  # type: ignore[operator]
    refused = await client.post(
        "/api/oauth/authorize",
        headers=other,
        json={"app_id": oauth_app.id, "return_url": RETURN_URL},
    )
    assert refused.status_code == 404
    assert refused.json()["code"] == "oauth_app_not_found"

    # A state belongs to the tenant that started it: the account lands there only.
    back = await _through_consent(await _authorize(client, auth, oauth_app), oauth_mail_user)
    assert (await client.get("/api/accounts", headers=other)).json()["items"] == []
    foreign = await client.get(f"/api/accounts/{back.params['account_id']}", headers=other)
    assert foreign.status_code == 404
    # Nor can tenant B reconnect tenant A's account through its own flow.
    reconnect = await client.post(
        "/api/oauth/authorize",
        headers=other,
        json={"app_id": oauth_app.id, "return_url": RETURN_URL},
    )
    assert reconnect.status_code == 404


async def test_a_denied_consent_returns_the_providers_error(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    live_mailsvc: str,
    oauth_app: OAuthApp,
) -> None:
    url = await _authorize(client, auth, oauth_app, state="s1")
    state = httpx.URL(url).params["state"]
    async with browser() as http:
        # What a provider redirects to when the user clicks "Cancel" (RFC 6749 §4.1.2.1).
        answer = await http.get(
            live_mailsvc + CALLBACK_PATH,
            params={"state": state, "error": "access_denied", "error_description": "no\r\nway"},
        )
    assert answer.status_code == 303
    back = httpx.URL(answer.headers["location"])
    assert str(back).startswith(RETURN_URL)
    assert back.params["error"] == "access_denied"
    assert back.params["error_description"] == "no way"
    assert back.params["state"] == "s1"
    assert await _account_ids(client, auth) == []


async def test_a_failing_token_endpoint_is_an_error_code_and_nothing_is_stored(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    oauth_app: OAuthApp,
    oauth_server: OAuthServer,
    oauth_mail_user: TestMailUser,
) -> None:
    for fault in ("500", "garbage"):
        oauth_server.fail_token_endpoint(fault)  # type: ignore[arg-type]
        back = await _through_consent(await _authorize(client, auth, oauth_app), oauth_mail_user)
        assert back.params["error"] == "provider_unavailable", back
        assert "account_id" not in back.params
    oauth_server.fail_token_endpoint(None)
    assert await _account_ids(client, auth) == []
    assert oauth_server.token_requests("authorization_code") == 2


async def test_a_mailbox_the_mail_server_cannot_open_is_reported_on_the_return_url(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    oauth_app: OAuthApp,
    oauth_dovecot: DovecotServer,
) -> None:
    # The provider knows this user; the mail server accepts the token but has no such
    # mailbox, and drops the connection (Dovecot: "user not found from userdb").
    stranger = TestMailUser(
        username="nobody-here", email="nobody-here@example.test", password="unused"
    )
    back = await _through_consent(await _authorize(client, auth, oauth_app), stranger)
    assert back.params["error"] == "imap_connect_failed", back
    assert back.params["error_description"].startswith("IMAP connection failed")
    assert await _account_ids(client, auth) == []
