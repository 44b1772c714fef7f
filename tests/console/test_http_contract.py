"""The console over plain HTTP: sign-in, the security headers, CSRF, tenancy, the switch.

The browser journeys are in the other files of this folder; these pin what a browser
does not show: headers, refused posts, status codes.
"""

from __future__ import annotations

import contextlib
import html
import re
from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI

from mailsvc.app import create_app
from mailsvc.auth.service import create_api_key
from mailsvc.config import Settings
from mailsvc.console.session import SESSION_COOKIE
from mailsvc.event.account_state import change_account_state
from mailsvc.runtime import Runtime
from tests.fixtures.app import remember_secret
from tests.fixtures.mail import SyncTarget

_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


async def _api_key(app: FastAPI, *tenants: str) -> str:
    runtime: Runtime = app.state.mailsvc
    async with runtime.sessionmaker.begin() as session:
        created = await create_api_key(session, name="console test", tenants=list(tenants))
    return created.key


@contextlib.asynccontextmanager
async def _signed_in(app: FastAPI, *tenants: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://mailsvc.test"
    ) as http:
        response = await http.post(
            "/console/login", data={"api_key": await _api_key(app, *tenants)}
        )
        assert response.status_code == 303, response.text
        assert response.headers["location"] == f"/console/{min(tenants)}/accounts"
        yield http


async def test_pages_carry_a_csp_without_inline_script(app: FastAPI, tenant_id: str) -> None:
    async with _signed_in(app, tenant_id) as http:
        for section in ("accounts", "outbox", "webhooks", "keys"):
            page = await http.get(f"/console/{tenant_id}/{section}")
            assert page.status_code == 200, (section, page.text)
            policy = page.headers["content-security-policy"]
            assert "script-src 'self';" in policy
            assert "unsafe-inline" not in policy
            assert "unsafe-eval" not in policy
            assert page.headers["cache-control"] == "no-store"
            assert "<script>" not in page.text
            assert " style=" not in page.text


async def test_the_session_cookie_is_httponly_and_strict(app: FastAPI, tenant_id: str) -> None:
    http = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://mailsvc.test")
    async with http:
        response = await http.post(
            "/console/login", data={"api_key": await _api_key(app, tenant_id)}
        )
        cookie = response.headers["set-cookie"]
        assert cookie.startswith(f"{SESSION_COOKIE}=")
        assert "HttpOnly" in cookie
        assert "SameSite=strict" in cookie
        assert "Path=/console" in cookie


async def test_a_wrong_key_is_refused_and_pages_need_a_session(
    client: httpx.AsyncClient, tenant_id: str
) -> None:
    refused = await client.post("/console/login", data={"api_key": "msk_wrong"})
    assert refused.status_code == 401
    assert "not valid" in refused.text
    assert SESSION_COOKIE not in refused.headers.get("set-cookie", "")
    page = await client.get(f"/console/{tenant_id}/accounts")
    assert page.status_code == 303
    assert page.headers["location"] == "/console/login"


async def test_a_post_without_the_csrf_token_changes_nothing(
    app: FastAPI,
    tenant_id: str,
    target: SyncTarget,
    auth: dict[str, str],
    client: httpx.AsyncClient,
) -> None:
    account_id = str(target.account_id)
    async with _signed_in(app, tenant_id) as http:
        action = f"/console/{tenant_id}/accounts/{account_id}/disable"
        for form in ({}, {"csrf_token": "forged"}):
            refused = await http.post(action, data=form)
            assert refused.status_code == 403
        page = await http.get(f"/console/{tenant_id}/accounts")
        token = _CSRF.search(page.text)
        assert token is not None
        cross_site = await http.post(
            action, data={"csrf_token": token.group(1)}, headers={"Origin": "https://evil.test"}
        )
        assert cross_site.status_code == 403
        state = (await client.get(f"/api/accounts/{account_id}", headers=auth)).json()["state"]
        assert state != "disabled"
        done = await http.post(action, data={"csrf_token": token.group(1)})
        assert done.status_code == 303
        state = (await client.get(f"/api/accounts/{account_id}", headers=auth)).json()["state"]
        assert state == "disabled"


async def test_another_tenants_pages_are_refused(
    app: FastAPI,
    tenant_id: str,
    target: SyncTarget,
    auth: dict[str, str],
    client: httpx.AsyncClient,
) -> None:
    account_id = str(target.account_id)
    other = f"{tenant_id}-b"
    async with _signed_in(app, other) as http:
        own_list = await http.get(f"/console/{other}/accounts")
        assert account_id not in own_list.text
        assert target.user.email not in own_list.text
        # The account under B's tenant: not found; A's tenant in the path: not granted.
        assert (await http.get(f"/console/{other}/accounts/{account_id}")).status_code == 404
        foreign = await http.get(f"/console/{tenant_id}/accounts/{account_id}")
        assert foreign.status_code == 403
        assert target.user.email not in foreign.text


async def test_an_operator_key_switches_between_its_tenants(app: FastAPI, tenant_id: str) -> None:
    second = f"{tenant_id}-z"
    async with _signed_in(app, tenant_id, second) as http:
        page = await http.get(f"/console/{tenant_id}/accounts")
        assert f'data-tenant="{second}"' in page.text
        assert (await http.get(f"/console/{second}/accounts")).status_code == 200


@pytest.mark.parametrize("path", ["/console", "/console/login", "/console/static/console.css"])
async def test_console_enabled_false_removes_it(settings: Settings, path: str) -> None:
    app = create_app(settings.model_copy(update={"console_enabled": False}))
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://mailsvc.test"
    ) as http:
        assert (await http.get(path)).status_code == 404


async def test_new_passwords_release_an_account_from_auth_error(
    app: FastAPI,
    tenant_id: str,
    target: SyncTarget,
    auth: dict[str, str],
    client: httpx.AsyncClient,
) -> None:
    runtime: Runtime = app.state.mailsvc
    async with runtime.sessionmaker.begin() as session:
        await change_account_state(
            session, tenant_id, target.account_id, "auth_error", "AUTHENTICATIONFAILED"
        )
    async with _signed_in(app, tenant_id) as http:
        page = await http.get(f"/console/{tenant_id}/accounts")
        assert 'class="credentials"' in page.text
        assert "AUTHENTICATIONFAILED" in page.text
        token = _CSRF.search(page.text)
        assert token is not None
        action = f"/console/{tenant_id}/accounts/{target.account_id}/credentials"

        wrong = remember_secret("not-the-password")
        refused = await http.post(action, data={"csrf_token": token.group(1), "password": wrong})
        assert refused.status_code == 303
        shown = await http.get(f"/console/{tenant_id}/accounts")
        assert 'class="flash error"' in shown.text
        assert wrong not in shown.text
        account = (await client.get(f"/api/accounts/{target.account_id}", headers=auth)).json()
        assert account["state"] == "auth_error"

        done = await http.post(
            action, data={"csrf_token": token.group(1), "password": target.user.password}
        )
        assert done.status_code == 303
        account = (await client.get(f"/api/accounts/{target.account_id}", headers=auth)).json()
        assert account["state"] == "connecting"


@pytest.mark.parametrize(
    ("form", "expected"),
    [
        ({"name": "two\nlines"}, "check the key's name"),
        ({"name": "fine", "scopes": "no:such-scope"}, "check the key's scopes"),
    ],
)
async def test_a_refused_key_is_not_created(
    app: FastAPI, tenant_id: str, form: dict[str, str], expected: str
) -> None:
    async with _signed_in(app, tenant_id) as http:
        page = await http.get(f"/console/{tenant_id}/keys")
        token = _CSRF.search(page.text)
        assert token is not None
        refused = await http.post(
            f"/console/{tenant_id}/keys", data={"csrf_token": token.group(1), **form}
        )
        assert refused.status_code == 303
        shown = await http.get(f"/console/{tenant_id}/keys")
        assert expected in html.unescape(shown.text)
        assert 'id="new-key"' not in shown.text
        # Only the key the test signed in with.
        assert shown.text.count("data-key-id=") == 1


async def test_sign_out_needs_the_sessions_csrf_token(app: FastAPI, tenant_id: str) -> None:
    async with _signed_in(app, tenant_id) as http:
        forged = await http.post("/console/logout", data={"csrf_token": "forged"})
        assert forged.status_code == 403
        assert (await http.get(f"/console/{tenant_id}/accounts")).status_code == 200
        page = await http.get(f"/console/{tenant_id}/accounts")
        token = _CSRF.search(page.text)
        assert token is not None
        done = await http.post("/console/logout", data={"csrf_token": token.group(1)})
        assert done.status_code == 303
        # The cookie is deleted (Max-Age=0): the next page asks for a sign-in.
        assert (await http.get(f"/console/{tenant_id}/accounts")).status_code == 303
