"""`/api/keys`: a tenant's own API keys, and revocation reaching issued tokens."""

from __future__ import annotations

import io
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from mailsvc.app import create_app
from mailsvc.auth.service import create_api_key, list_api_keys
from mailsvc.config import Settings
from mailsvc.runtime import Runtime
from tests.fixtures.app import TokenFactory, remember_secret
from tests.fixtures.waiting import eventually


def _bearer(token: str, **headers: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", **headers}


async def _stored_key(app: FastAPI, *tenants: str, scopes: list[str] | None = None) -> str:
    """A key as the CLI creates it (all scopes unless `scopes`)."""
    state: Runtime = app.state.mailsvc
    async with state.sessionmaker.begin() as session:
        created = await create_api_key(session, name="cli", tenants=list(tenants), scopes=scopes)
    return remember_secret(created.key)


async def _login(client: httpx.AsyncClient, key: str) -> httpx.Response:
    return await client.post("/auth/login", json={"api_key": key})


async def _token(client: httpx.AsyncClient, key: str) -> str:
    response = await _login(client, key)
    assert response.status_code == 200, response.text
    token: str = response.json()["access_token"]
    return token


async def _create(
    client: httpx.AsyncClient, token: str, body: dict[str, Any], **headers: str
) -> httpx.Response:
    return await client.post("/api/keys", json=body, headers=_bearer(token, **headers))


async def _created(client: httpx.AsyncClient, token: str, **body: Any) -> dict[str, Any]:
    response = await _create(client, token, {"name": "sync", "scopes": ["mail:read"], **body})
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    remember_secret(created["api_key"])
    return created


async def _listed_response(client: httpx.AsyncClient, token: str) -> httpx.Response:
    return await client.get("/api/keys", headers=_bearer(token))


async def _listed(client: httpx.AsyncClient, token: str, **headers: str) -> list[dict[str, Any]]:
    response = await client.get("/api/keys", headers=_bearer(token, **headers))
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


async def _messages(client: httpx.AsyncClient, token: str) -> httpx.Response:
    """A hot route (kit/hot_route.py): its auth runs the dependency's fast path."""
    return await client.get("/api/messages", headers=_bearer(token))


async def test_a_created_key_is_shown_once_logs_in_and_is_listed_without_its_value(
    client: httpx.AsyncClient, make_token: TokenFactory, tenant_id: str, service_log: io.StringIO
) -> None:
    manager = make_token(tenant_id)
    created = await _created(
        client, manager, name="billing sync", scopes=["mail:send", "mail:read"]
    )
    key = created["api_key"]
    assert key.startswith("msk_")
    assert created["name"] == "billing sync"
    assert created["scopes"] == ["mail:read", "mail:send"]
    assert created["revoked_at"] is None
    assert created["last_used_at"] is None

    token = await _token(client, key)
    assert (await _messages(client, token)).status_code == 200

    response = await client.get("/api/keys", headers=_bearer(manager))
    assert key not in response.text
    [listed] = response.json()["items"]
    assert listed["id"] == created["id"]
    assert "api_key" not in listed
    assert listed["last_used_at"] is not None
    # The log says which key was created, never the key.
    assert created["id"] in service_log.getvalue()
    assert key not in service_log.getvalue()


async def test_the_list_is_the_tenants_keys_newest_first_revoked_ones_too(
    client: httpx.AsyncClient, make_token: TokenFactory, tenant_id: str
) -> None:
    manager = make_token(tenant_id)
    first = await _created(client, manager, name="first")
    second = await _created(client, manager, name="second")
    revoked = await client.delete(f"/api/keys/{first['id']}", headers=_bearer(manager))
    assert revoked.status_code == 200
    listed = await _listed(client, manager)
    assert [item["id"] for item in listed] == [second["id"], first["id"]]
    assert listed[1]["revoked_at"] == revoked.json()["revoked_at"] is not None
    assert listed[0]["revoked_at"] is None


async def test_revoking_is_idempotent_and_the_key_logs_in_no_more(
    client: httpx.AsyncClient, make_token: TokenFactory, tenant_id: str
) -> None:
    manager = make_token(tenant_id)
    created = await _created(client, manager)
    first = await client.delete(f"/api/keys/{created['id']}", headers=_bearer(manager))
    assert first.status_code == 200
    assert first.json()["id"] == created["id"]
    assert first.json()["revoked_at"] is not None
    again = await client.delete(f"/api/keys/{created['id']}", headers=_bearer(manager))
    assert again.status_code == 200
    assert again.json() == first.json()
    login = await _login(client, created["api_key"])
    assert login.status_code == 401
    assert login.json()["code"] == "invalid_api_key"


async def test_a_revoked_keys_tokens_are_refused_at_once_by_the_revoking_process(
    client: httpx.AsyncClient, make_token: TokenFactory, tenant_id: str
) -> None:
    # The app's cache keeps a key's status 30 s (the default): only the eviction on
    # revoke can make the next request see it.
    manager = make_token(tenant_id)
    created = await _created(client, manager, scopes=["mail:read", "keys:manage"])
    token = await _token(client, created["api_key"])
    assert (await _messages(client, token)).status_code == 200  # now cached as active
    revoked = await client.delete(f"/api/keys/{created['id']}", headers=_bearer(manager))
    assert revoked.status_code == 200
    # A hot route and one FastAPI solves, so both ways through the auth dependency.
    for refused in (await _messages(client, token), await _listed_response(client, token)):
        assert refused.status_code == 401
        assert refused.headers["www-authenticate"] == "Bearer"
        assert refused.json()["code"] == "api_key_revoked"


async def test_a_key_can_revoke_itself(
    client: httpx.AsyncClient, app: FastAPI, tenant_id: str
) -> None:
    token = await _token(client, await _stored_key(app, tenant_id))
    [own] = await _listed(client, token)
    assert (
        await client.delete(f"/api/keys/{own['id']}", headers=_bearer(token))
    ).status_code == 200
    refused = await client.get("/api/keys", headers=_bearer(token))
    assert refused.status_code == 401
    assert refused.json()["code"] == "api_key_revoked"


@pytest.fixture
async def other_process(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """A second api process of the same deployment that keeps key statuses 1 s."""
    app = create_app(settings.model_copy(update={"api_key_status_cache_seconds": 1.0}))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://mailsvc.test") as http:
            yield http


async def test_another_process_refuses_a_revoked_keys_tokens_within_its_cache_lifetime(
    client: httpx.AsyncClient,
    other_process: httpx.AsyncClient,
    make_token: TokenFactory,
    tenant_id: str,
) -> None:
    manager = make_token(tenant_id)
    created = await _created(client, manager)
    token = await _token(client, created["api_key"])
    assert (await _messages(other_process, token)).status_code == 200  # cached there
    revoked = await client.delete(f"/api/keys/{created['id']}", headers=_bearer(manager))
    assert revoked.status_code == 200

    async def refused() -> bool:
        response = await _messages(other_process, token)
        assert response.status_code in (200, 401), response.text
        return response.status_code == 401 and response.json()["code"] == "api_key_revoked"

    await eventually(refused, within=10, what="the other process refusing the token")


async def test_tokens_for_a_key_that_does_not_exist_are_refused(
    client: httpx.AsyncClient, make_token: TokenFactory, tenant_id: str
) -> None:
    for subject in (f"apikey:{uuid.uuid4()}", "apikey:not-a-uuid"):
        response = await _messages(client, make_token(tenant_id, subject=subject))
        assert response.status_code == 401, subject
        assert response.json()["code"] == "api_key_revoked"


async def test_another_tenant_neither_lists_nor_revokes_the_tenants_keys(
    client: httpx.AsyncClient, make_token: TokenFactory, tenant_id: str
) -> None:
    created = await _created(client, make_token(tenant_id))
    intruder = make_token(tenant_id + "-b")
    assert await _listed(client, intruder) == []
    response = await client.delete(f"/api/keys/{created['id']}", headers=_bearer(intruder))
    assert response.status_code == 404
    assert response.json()["code"] == "api_key_not_found"
    assert (await _login(client, created["api_key"])).status_code == 200
    [listed] = await _listed(client, make_token(tenant_id))
    assert listed["revoked_at"] is None


async def test_keys_granting_several_tenants_are_no_tenants_to_list_or_revoke(
    client: httpx.AsyncClient, app: FastAPI, make_token: TokenFactory, tenant_id: str
) -> None:
    other = tenant_id + "-b"
    shared = await _stored_key(app, tenant_id, other)
    state: Runtime = app.state.mailsvc
    async with state.sessionmaker() as session:
        [row] = await list_api_keys(session, granting=other)
    operator = make_token(tenant_id, other)
    for tenant in (tenant_id, other):
        assert await _listed(client, make_token(tenant)) == []
        assert await _listed(client, operator, **{"X-Tenant-ID": tenant}) == []
        response = await client.delete(f"/api/keys/{row.id}", headers=_bearer(make_token(tenant)))
        assert response.status_code == 404
        assert response.json()["code"] == "api_key_not_found"
    assert (await _login(client, shared)).status_code == 200


async def test_a_key_created_through_a_tenant_grants_that_tenant_alone(
    client: httpx.AsyncClient, make_token: TokenFactory, tenant_id: str
) -> None:
    other = tenant_id + "-b"
    operator = make_token(tenant_id, other)
    response = await _create(
        client, operator, {"name": "b only", "scopes": ["mail:read"]}, **{"X-Tenant-ID": other}
    )
    assert response.status_code == 201, response.text
    token = await _token(client, remember_secret(response.json()["api_key"]))
    # One tenant in its token: no header needed, and the first tenant is not granted.
    assert (await client.get("/api/messages", headers=_bearer(token))).status_code == 200
    refused = await client.get(
        "/api/messages", headers=_bearer(token, **{"X-Tenant-ID": tenant_id})
    )
    assert refused.status_code == 403
    assert refused.json()["code"] == "tenant_not_granted"
    listed = await _listed(client, operator, **{"X-Tenant-ID": other})
    assert [item["id"] for item in listed] == [response.json()["id"]]
    assert await _listed(client, operator, **{"X-Tenant-ID": tenant_id}) == []


async def test_a_key_gets_only_scopes_its_creator_holds(
    client: httpx.AsyncClient, make_token: TokenFactory, tenant_id: str
) -> None:
    manager = make_token(tenant_id, scopes=["keys:manage", "mail:read"])
    response = await _create(
        client, manager, {"name": "more", "scopes": ["mail:read", "mail:send", "accounts:write"]}
    )
    assert response.status_code == 403
    problem = response.json()
    assert problem["code"] == "scope_not_held"
    assert problem["errors"][0]["field"] == "body.scopes"
    assert "accounts:write, mail:send" in problem["errors"][0]["message"]
    assert await _listed(client, manager) == []
    allowed = await _create(client, manager, {"name": "less", "scopes": ["mail:read"]})
    assert allowed.status_code == 201
    remember_secret(allowed.json()["api_key"])
    # Its own scope it can give, no other.
    keys_only = make_token(tenant_id, scopes=["keys:manage"])
    escalated = await _create(
        client, keys_only, {"name": "x", "scopes": ["keys:manage", "mail:read"]}
    )
    assert escalated.json()["code"] == "scope_not_held"


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/keys"),
        ("POST", "/api/keys"),
        ("DELETE", "/api/keys/01900000-0000-7000-8000-000000000000"),
    ],
)
async def test_every_keys_route_needs_keys_manage(
    client: httpx.AsyncClient, make_token: TokenFactory, tenant_id: str, method: str, path: str
) -> None:
    scopes = ["accounts:read", "accounts:write", "mail:read", "mail:write", "mail:send",
              "webhooks:manage"]  # fmt: skip
    response = await client.request(
        method,
        path,
        headers=_bearer(make_token(tenant_id, scopes=scopes)),
        json={"name": "x", "scopes": ["mail:read"]} if method == "POST" else None,
    )
    assert response.status_code == 403
    assert response.json()["code"] == "insufficient_scope"


async def test_keys_created_by_the_cli_manage_keys_and_narrowed_ones_do_not(
    client: httpx.AsyncClient, app: FastAPI, tenant_id: str
) -> None:
    full = await _token(client, await _stored_key(app, tenant_id))
    assert (await client.get("/api/keys", headers=_bearer(full))).status_code == 200
    narrowed = await _token(client, await _stored_key(app, tenant_id, scopes=["mail:read"]))
    response = await client.get("/api/keys", headers=_bearer(narrowed))
    assert response.status_code == 403
    assert response.json()["code"] == "insufficient_scope"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"scopes": ["mail:read"]}, "body.name"),
        ({"name": "", "scopes": ["mail:read"]}, "body.name"),
        ({"name": "x" * 201, "scopes": ["mail:read"]}, "body.name"),
        ({"name": "two\nlines", "scopes": ["mail:read"]}, "body.name"),
        ({"name": "nul\x00", "scopes": ["mail:read"]}, "body.name"),
        ({"name": 5, "scopes": ["mail:read"]}, "body.name"),
        ({"name": "x"}, "body.scopes"),
        ({"name": "x", "scopes": []}, "body.scopes"),
        ({"name": "x", "scopes": "mail:read"}, "body.scopes"),
        ({"name": "x", "scopes": ["everything"]}, "body.scopes.0"),
        ({"name": "x", "scopes": ["mail:read"], "tenants": ["other"]}, "body.tenants"),
    ],
)
async def test_a_bad_create_body_is_422_naming_the_field(
    client: httpx.AsyncClient,
    make_token: TokenFactory,
    tenant_id: str,
    body: dict[str, Any],
    field: str,
) -> None:
    manager = make_token(tenant_id)
    response = await _create(client, manager, body)
    assert response.status_code == 422, response.text
    assert response.json()["code"] == "validation_error"
    assert field in [error["field"] for error in response.json()["errors"]]
    assert await _listed(client, manager) == []


async def test_a_name_of_200_printable_characters_is_taken(
    client: httpx.AsyncClient, make_token: TokenFactory, tenant_id: str
) -> None:
    created = await _created(client, make_token(tenant_id), name="ü" * 200)
    assert created["name"] == "ü" * 200


async def test_revoking_a_malformed_id_is_422_naming_it(
    client: httpx.AsyncClient, make_token: TokenFactory, tenant_id: str
) -> None:
    response = await client.delete("/api/keys/not-an-id", headers=_bearer(make_token(tenant_id)))
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "path.key_id"
