"""OAUTHBEARER (RFC 7628) where a server offers only the standard mechanism, and a
server that offers no OAuth2 mechanism at all."""

from __future__ import annotations

import secrets
import time
import uuid
from collections.abc import Iterator

import httpx
import pytest
from fastapi import FastAPI

from mailsvc.account.logins import AccountLogins
from mailsvc.account.repository import AccountRepository
from mailsvc.imap.connection import connect_imap
from mailsvc.imap.errors import ImapAuthError
from mailsvc.kit.mailserver import MailServer, tls_context
from mailsvc.runtime import Runtime
from mailsvc.sync.engine import SyncEngine
from tests.fixtures.dovecot import DovecotServer, OAuth2Introspection, TestMailUser
from tests.fixtures.oauth_accounts import OAuthApp, RememberTokens, tokens_body
from tests.fixtures.oauth_server import DEFAULT_SCOPES, OAuthServer
from tests.fixtures.smtp_server import SmtpRelay
from tests.fixtures.tls import TlsFiles


@pytest.fixture(scope="module")
def bearer_only_dovecot(oauth_server: OAuthServer, peer_tls: TlsFiles) -> Iterator[DovecotServer]:
    """A Dovecot offering OAUTHBEARER and no XOAUTH2."""
    introspector = oauth_server.register_client(auth_method="client_secret_basic")
    server = DovecotServer(
        tls=peer_tls,
        oauth2=OAuth2Introspection(
            url=oauth_server.introspection_url,
            client_id=introspector.client_id,
            client_secret=introspector.client_secret,
            mechanisms=("oauthbearer",),
        ),
    )
    server.start()
    yield server
    server.stop()


async def _register_app(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    oauth_server: OAuthServer,
    dovecot: DovecotServer,
    relay: SmtpRelay,
) -> OAuthApp:
    provider_client = oauth_server.register_client(redirect_uris=["http://app.test/cb"])
    response = await client.post(
        "/api/oauth-apps",
        headers=auth,
        json={
            "name": "Standard mechanisms only",
            "provider": "generic",
            "client_id": provider_client.client_id,
            "client_secret": provider_client.client_secret,
            "redirect_uri": "http://app.test/cb",
            "authorization_url": oauth_server.authorization_url,
            "token_url": oauth_server.token_url,
            "scopes": list(DEFAULT_SCOPES),
            "imap": {"host": dovecot.host, "port": dovecot.imaps_port},
            "smtp": {"host": relay.host, "port": relay.tls_port},
        },
    )
    assert response.status_code == 201, response.text
    return OAuthApp(id=response.json()["id"], client=provider_client)


async def _send(
    app: FastAPI, client: httpx.AsyncClient, auth: dict[str, str], account_id: uuid.UUID, to: str
) -> dict[str, object]:
    sent = await client.post(
        "/api/send",
        headers=auth,
        json={
            "account_id": str(account_id),
            "to": [{"address": to}],
            "subject": f"Bearer {secrets.token_hex(3)}",
            "text": "RFC 7628\n",
        },
    )
    assert sent.status_code == 202, sent.text
    state: Runtime = app.state.mailsvc
    await state.outbox.wait_idle()
    entry: dict[str, object] = (
        await client.get(f"/api/outbox/{sent.json()['id']}", headers=auth)
    ).json()
    return entry


async def test_oauthbearer_is_used_where_it_is_all_the_server_offers(
    app: FastAPI,
    client: httpx.AsyncClient,
    auth: dict[str, str],
    tenant_id: str,
    engine: SyncEngine,
    oauth_server: OAuthServer,
    bearer_only_dovecot: DovecotServer,
    oauth_smtp_relay: SmtpRelay,
    oauth_mail_user: TestMailUser,
    remember_account_tokens: RememberTokens,
) -> None:
    user = bearer_only_dovecot.add_user(f"bearer-{secrets.token_hex(5)}", "unused-password")
    oauth_app = await _register_app(
        client, auth, oauth_server, bearer_only_dovecot, oauth_smtp_relay
    )
    oauth_smtp_relay.offer_auth_mechanisms("OAUTHBEARER")
    tokens = oauth_server.issue_tokens(oauth_app.client, user.email)
    created = await client.post(
        "/api/accounts",
        headers=auth,
        json={"email": user.email, "auth": tokens_body(oauth_app, tokens)},
    )
    # Created only after both logins worked: IMAP and SMTP over OAUTHBEARER.
    assert created.status_code == 201, created.text
    account_id = uuid.UUID(created.json()["id"])
    await engine.sync_account(tenant_id, account_id)
    account = (await client.get(f"/api/accounts/{account_id}", headers=auth)).json()
    assert account["state"] == "connected"
    logins = bearer_only_dovecot.log_path.read_text(errors="replace")
    assert f"Login: user=<{user.username}>, method=OAUTHBEARER" in logins
    # The relay delivers into the other Dovecot: write to a mailbox there.
    entry = await _send(app, client, auth, account_id, oauth_mail_user.email)
    assert entry["status"] == "sent", str(entry)
    message_id = str(entry["message_id"]).encode()
    (received,) = [m for m in oauth_smtp_relay.received if message_id in m.data]
    assert received.auth_mechanism == "OAUTHBEARER"

    # A refused token gets its error challenge answered and fails at once, not by timeout.
    state: Runtime = app.state.mailsvc
    async with state.sessionmaker() as session:
        stored = await AccountRepository(session, tenant_id).get(account_id)
    assert stored is not None
    server = await state.component(AccountLogins).server(stored, "imap")
    refused = MailServer(
        host=server.host,
        port=server.port,
        security=server.security,
        username=server.username,
        password="",
        access_token=f"refused-{secrets.token_hex(8)}",
    )
    started = time.monotonic()
    with pytest.raises(ImapAuthError, match="AUTHENTICATIONFAILED"):
        await connect_imap(refused, io_timeout=10, tls=tls_context(state.settings.mail_tls_ca_file))
    assert time.monotonic() - started < 5
    await remember_account_tokens(tenant_id)


async def test_a_server_without_an_oauth2_mechanism_fails_the_send_plainly(
    app: FastAPI,
    client: httpx.AsyncClient,
    auth: dict[str, str],
    tenant_id: str,
    oauth_server: OAuthServer,
    bearer_only_dovecot: DovecotServer,
    oauth_smtp_relay: SmtpRelay,
    remember_account_tokens: RememberTokens,
) -> None:
    user = bearer_only_dovecot.add_user(f"plain-{secrets.token_hex(5)}", "unused-password")
    oauth_app = await _register_app(
        client, auth, oauth_server, bearer_only_dovecot, oauth_smtp_relay
    )
    tokens = oauth_server.issue_tokens(oauth_app.client, user.email)
    created = await client.post(
        "/api/accounts",
        headers=auth,
        json={"email": user.email, "auth": tokens_body(oauth_app, tokens)},
        params={"verify": "false"},
    )
    assert created.status_code == 201, created.text
    oauth_smtp_relay.offer_auth_mechanisms("PLAIN", "LOGIN")
    entry = await _send(app, client, auth, uuid.UUID(created.json()["id"]), user.email)
    assert entry["status"] == "failed", entry
    assert "no OAuth2 login mechanism" in str(entry["last_error"])
    assert "PLAIN" in str(entry["last_error"])
    await remember_account_tokens(tenant_id)
