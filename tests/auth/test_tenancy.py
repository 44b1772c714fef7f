import base64
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import pytest
from fastapi import FastAPI
from pydantic import SecretStr

from mailsvc.app import create_app
from mailsvc.auth.tokens import TokenCodec
from mailsvc.config import Settings
from tests.fixtures.app import TokenFactory


def _b64(data: dict[str, object]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")


def _claims(tenant: str, **overrides: object) -> dict[str, object]:
    return {
        "sub": "x", "tenant": tenant, "scopes": ["accounts:read"],
        "exp": int(time.time()) + 60, "iss": "mailsvc", "aud": "mailsvc-api", **overrides,
    }  # fmt: skip


async def _status(client: httpx.AsyncClient, token: str, **headers: str) -> httpx.Response:
    return await client.get(
        "/api/accounts", headers={"Authorization": f"Bearer {token}", **headers}
    )


async def test_missing_token_is_401_with_challenge(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/accounts")
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert response.json()["code"] == "missing_token"


async def test_alg_none_token_is_401(client: httpx.AsyncClient, tenant_id: str) -> None:
    token = _b64({"alg": "none", "typ": "JWT"}) + "." + _b64(_claims(tenant_id)) + "."
    response = await _status(client, token)
    assert response.status_code == 401
    assert response.json()["code"] == "invalid_token"


async def test_wrong_signature_is_401(client: httpx.AsyncClient, tenant_id: str) -> None:
    other = Settings(_env_file=None, jwt_secret=SecretStr("x" * 16 + "another-secret!!"))  # type: ignore[call-arg]
    token = TokenCodec(other).issue(subject="x", tenants=[tenant_id], scopes=[], expires_in=60)
    assert (await _status(client, token)).status_code == 401


async def test_wrong_audience_is_401(
    client: httpx.AsyncClient, settings: Settings, tenant_id: str
) -> None:
    codec = TokenCodec(settings.model_copy(update={"jwt_audience": "other-service"}))
    token = codec.issue(subject="x", tenants=[tenant_id], scopes=[], expires_in=60)
    assert (await _status(client, token)).status_code == 401


async def test_expired_token_is_401(
    client: httpx.AsyncClient, make_token: TokenFactory, tenant_id: str
) -> None:
    assert (await _status(client, make_token(tenant_id, expires_in=-1))).status_code == 401


async def test_tenant_header_outside_the_grant_is_403(
    client: httpx.AsyncClient, make_token: TokenFactory, tenant_id: str
) -> None:
    response = await _status(client, make_token(tenant_id), **{"X-Tenant-ID": "someone-else"})
    assert response.status_code == 403
    assert response.json()["code"] == "tenant_not_granted"


async def test_multi_tenant_token_selects_with_the_header(
    client: httpx.AsyncClient, make_token: TokenFactory
) -> None:
    token = make_token("tenant-a", "tenant-b")
    missing = await _status(client, token)
    assert missing.status_code == 400
    assert missing.json()["code"] == "tenant_required"
    assert (await _status(client, token, **{"X-Tenant-ID": "tenant-b"})).status_code == 200


@asynccontextmanager
async def _limited(settings: Settings, *, per_minute: int, per_hour: int) -> AsyncIterator[FastAPI]:
    """A running app whose tenants may make `per_minute` requests a minute."""
    app = create_app(
        settings.model_copy(
            update={
                "rate_limit_requests_per_minute": per_minute,
                "rate_limit_requests_per_hour": per_hour,
            }
        )
    )
    async with app.router.lifespan_context(app):
        yield app


@pytest.fixture
async def strict_app(settings: Settings) -> AsyncIterator[FastAPI]:
    async with _limited(settings, per_minute=3, per_hour=100) as app:
        yield app


async def test_rate_limit_is_per_tenant_with_headers(
    strict_app: FastAPI, make_token: TokenFactory, tenant_id: str
) -> None:
    transport = httpx.ASGITransport(app=strict_app)
    async with httpx.AsyncClient(transport=transport, base_url="http://mailsvc.test") as client:
        token = make_token(tenant_id)
        statuses = [(await _status(client, token)).status_code for _ in range(3)]
        assert statuses == [200, 200, 200]
        limited = await _status(client, token)
        assert limited.status_code == 429
        assert limited.json()["code"] == "rate_limited"
        assert 1 <= int(limited.headers["retry-after"]) <= 60
        assert limited.headers["ratelimit-limit"] == "3"
        assert limited.headers["ratelimit-remaining"] == "0"
        # Another tenant has its own budget.
        assert (await _status(client, make_token(tenant_id + "-other"))).status_code == 200


@pytest.fixture
async def limited_app(settings: Settings) -> AsyncIterator[FastAPI]:
    async with _limited(settings, per_minute=8, per_hour=1000) as app:
        yield app


async def test_each_request_counts_once_whatever_route_it_takes(
    limited_app: FastAPI, make_token: TokenFactory, tenant_id: str
) -> None:
    unknown = "01900000-0000-7000-8000-000000000000"
    routes = [
        "/api/messages?limit=5",
        f"/api/messages/{unknown}",  # 404: answered, so counted
        "/api/threads",
        "/api/sync/search?query=report",
        f"/api/sync/status/{unknown}",
        f"/api/accounts/{unknown}/mailboxes",
        "/api/accounts",
        "/api/changes",  # 422 (no `since`): answered after the limiter, so counted
    ]
    transport = httpx.ASGITransport(app=limited_app)
    headers = {"Authorization": f"Bearer {make_token(tenant_id)}"}
    async with httpx.AsyncClient(transport=transport, base_url="http://mailsvc.test") as client:
        for used, path in enumerate(routes, start=1):
            response = await client.get(path, headers=headers)
            assert response.status_code in (200, 404, 422), (path, response.text)
            assert response.headers["ratelimit-limit"] == "8", path
            assert response.headers["ratelimit-remaining"] == str(8 - used), path
        for path in routes:
            limited = await client.get(path, headers=headers)
            assert limited.status_code == 429, path
            assert limited.headers["content-type"] == "application/problem+json"
            assert limited.json()["code"] == "rate_limited"
            assert 1 <= int(limited.headers["retry-after"]) <= 60
            assert limited.headers["ratelimit-remaining"] == "0"
