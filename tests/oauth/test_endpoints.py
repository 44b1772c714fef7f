"""`/api/oauth-apps`: presets, secrets that never come back, tenancy, an app in use."""

from __future__ import annotations

import dataclasses
import secrets
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select

from mailsvc.errors import UnprocessableError
from mailsvc.models import OAuthApp as OAuthAppRow
from mailsvc.oauth import schemas
from mailsvc.oauth.secrets import open_client_secret
from mailsvc.oauth.service import OAuthAppService
from mailsvc.runtime import Runtime
from tests.fixtures.app import TokenFactory, remember_secret
from tests.fixtures.dovecot import TestMailUser
from tests.fixtures.oauth_accounts import OAuthApp, tokens_body
from tests.fixtures.oauth_server import OAuthServer


def _body(**fields: Any) -> dict[str, Any]:
    return {
        "name": "Example Inc.",
        "client_id": "1234-abc.apps.googleusercontent.com",
        "client_secret": remember_secret(f"GOCSPX-{secrets.token_urlsafe(16)}"),
        "redirect_uri": "https://mail-api.example.com/api/oauth/callback",
        **fields,
    }


async def _stored_secret(app: FastAPI, app_id: str) -> str:
    state: Runtime = app.state.mailsvc
    async with state.sessionmaker() as session:
        row = await session.scalar(select(OAuthAppRow).where(OAuthAppRow.id == app_id))
    assert row is not None
    return open_client_secret(state.secrets, row)


async def test_presets_fill_in_google_and_microsoft(
    app: FastAPI, client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    google = await client.post("/api/oauth-apps", headers=auth, json=_body(provider="google"))
    assert google.status_code == 201, google.text
    created = google.json()
    assert created["authorization_url"] == "https://accounts.google.com/o/oauth2/v2/auth"
    assert created["token_url"] == "https://oauth2.googleapis.com/token"
    assert "https://mail.google.com/" in created["scopes"]
    assert created["imap"] == {"host": "imap.gmail.com", "port": 993, "security": "tls"}
    assert created["smtp"] == {"host": "smtp.gmail.com", "port": 465, "security": "tls"}
    assert "client_secret" not in created
    assert google.headers["location"] == f"/api/oauth-apps/{created['id']}"

    microsoft = await client.post("/api/oauth-apps", headers=auth, json=_body(provider="microsoft"))
    scopes = microsoft.json()["scopes"]
    assert "https://outlook.office.com/IMAP.AccessAsUser.All" in scopes
    assert "https://outlook.office.com/SMTP.Send" in scopes
    assert "offline_access" in scopes
    assert microsoft.json()["smtp"] == {
        "host": "smtp.office365.com",
        "port": 587,
        "security": "starttls",
    }

    # A single-tenant Azure app overrides the endpoints; the rest stays preset.
    tenant_urls = {
        "authorization_url": "https://login.microsoftonline.com/contoso.example/oauth2/v2.0/authorize",
        "token_url": "https://login.microsoftonline.com/contoso.example/oauth2/v2.0/token",
    }
    single = await client.post(
        "/api/oauth-apps", headers=auth, json=_body(provider="microsoft", **tenant_urls)
    )
    assert {k: single.json()[k] for k in tenant_urls} == tenant_urls
    assert single.json()["imap"]["host"] == "outlook.office365.com"

    listed = await client.get("/api/oauth-apps", headers=auth)
    assert [a["id"] for a in listed.json()["items"]] == [
        created["id"],
        microsoft.json()["id"],
        single.json()["id"],
    ]


async def test_the_secret_is_kept_when_left_out_and_never_returned(
    app: FastAPI, client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    body = _body(provider="google")
    created = (await client.post("/api/oauth-apps", headers=auth, json=body)).json()
    body.pop("client_secret")
    renamed = await client.put(
        f"/api/oauth-apps/{created['id']}", headers=auth, json={**body, "name": "Renamed"}
    )
    assert renamed.status_code == 200, renamed.text
    assert renamed.json()["name"] == "Renamed"
    stored = await _stored_secret(app, created["id"])
    assert stored.startswith("GOCSPX-")
    new_secret = remember_secret(f"GOCSPX-{secrets.token_urlsafe(16)}")
    await client.put(
        f"/api/oauth-apps/{created['id']}",
        headers=auth,
        json={**body, "client_secret": new_secret},
    )
    assert await _stored_secret(app, created["id"]) == new_secret
    for response in (
        renamed,
        await client.get(f"/api/oauth-apps/{created['id']}", headers=auth),
        await client.get("/api/oauth-apps", headers=auth),
    ):
        assert "GOCSPX-" not in response.text


async def test_bad_apps_are_refused_naming_the_field(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    incomplete = await client.post("/api/oauth-apps", headers=auth, json=_body(provider="generic"))
    assert incomplete.status_code == 422
    assert incomplete.json()["code"] == "oauth_app_incomplete"
    assert {e["field"] for e in incomplete.json()["errors"]} == {
        "body.authorization_url",
        "body.token_url",
        "body.scopes",
        "body.imap",
        "body.smtp",
    }
    for field, value in (
        ("token_url", "ftp://example.com/token"),
        ("redirect_uri", "not a url"),
        ("redirect_uri", "https://example.com/cb#fragment"),
        ("token_url", "https://example.com:99999/token"),
        ("scopes", ["a b"]),
        ("provider", "yahoo"),
        ("client_id", "line\nbreak"),
    ):
        refused = await client.post(
            "/api/oauth-apps", headers=auth, json=_body(provider="google") | {field: value}
        )
        assert refused.status_code == 422, (field, value, refused.text)
        assert refused.json()["errors"][0]["field"].startswith(f"body.{field}"), refused.text
    assert (await client.get("/api/oauth-apps", headers=auth)).json()["items"] == []


async def test_urls_to_private_hosts_or_without_tls_are_refused_in_production(
    app: FastAPI, auth: dict[str, str], tenant_id: str
) -> None:
    state: Runtime = app.state.mailsvc
    strict = dataclasses.replace(
        state, settings=state.settings.model_copy(update={"allow_private_hosts": False})
    )
    body = schemas.OAuthAppIn.model_validate(
        _body(
            provider="generic",
            authorization_url="https://idp.example.com/authorize",
            scopes=["mail"],
            imap={"host": "127.0.0.1", "port": 993},
            smtp={"host": "127.0.0.1", "port": 465},
        )
        | {"token_url": "http://127.0.0.1/token"}
    )
    async with state.sessionmaker() as session:
        service = OAuthAppService(session, tenant_id, strict)
        with pytest.raises(UnprocessableError) as plain_http:
            await service.create(body)
        assert plain_http.value.code == "oauth_url_not_allowed"
        with pytest.raises(UnprocessableError) as private:
            await service.create(body.model_copy(update={"token_url": "https://127.0.0.1/t"}))
        assert private.value.code == "host_not_allowed"
        assert private.value.errors is not None
        assert private.value.errors[0].field == "body.token_url"


async def test_apps_are_per_tenant_and_one_in_use_cannot_be_deleted(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    make_token: TokenFactory,
    oauth_app: OAuthApp,
    oauth_server: OAuthServer,
    oauth_mail_user: TestMailUser,
) -> None:
    other = {"Authorization": f"Bearer {make_token(f't-{secrets.token_hex(5)}')}"}
    for method in ("GET", "DELETE"):
        foreign = await client.request(method, f"/api/oauth-apps/{oauth_app.id}", headers=other)
        assert foreign.status_code == 404
        assert foreign.json()["code"] == "oauth_app_not_found"
    assert (await client.get("/api/oauth-apps", headers=other)).json()["items"] == []

    tokens = oauth_server.issue_tokens(oauth_app.client, oauth_mail_user.email)
    account = await client.post(
        "/api/accounts",
        headers=auth,
        json={"email": oauth_mail_user.email, "auth": tokens_body(oauth_app, tokens)},
    )
    assert account.status_code == 201, account.text
    in_use = await client.delete(f"/api/oauth-apps/{oauth_app.id}", headers=auth)
    assert in_use.status_code == 409
    assert in_use.json()["code"] == "oauth_app_in_use"
    await client.delete(f"/api/accounts/{account.json()['id']}", headers=auth)
    gone = await client.delete(f"/api/oauth-apps/{oauth_app.id}", headers=auth)
    assert gone.status_code == 204


async def test_gmail_and_microsoft_accounts_leave_the_sent_copy_to_the_provider(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    google = (
        await client.post("/api/oauth-apps", headers=auth, json=_body(provider="google"))
    ).json()

    async def create(email: str, **fields: Any) -> dict[str, Any]:
        response = await client.post(
            "/api/accounts",
            headers=auth,
            params={"verify": "false"},  # imap.gmail.com is not reachable from here
            json={
                "email": email,
                "auth": {
                    "type": "oauth2",
                    "app_id": google["id"],
                    "access_token": remember_secret(f"ya29.{secrets.token_urlsafe(20)}"),
                    "refresh_token": remember_secret(f"1//{secrets.token_urlsafe(20)}"),
                },
                **fields,
            },
        )
        assert response.status_code == 201, response.text
        account: dict[str, Any] = response.json()
        return account

    default = await create("ada@gmail.com")
    assert default["send_options"]["sent_copy"] == "provider"
    assert default["imap"] == {
        "host": "imap.gmail.com",
        "port": 993,
        "security": "tls",
        "username": "ada@gmail.com",
    }
    chosen = await create("bob@gmail.com", send_options={"sent_copy": "append"})
    assert chosen["send_options"]["sent_copy"] == "append"
