"""With METRICS_TOKEN set, `/metrics` answers only its bearer, and never shows it."""

from __future__ import annotations

import io
import logging
import secrets
from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI
from pydantic import SecretStr

from mailsvc.app import create_app
from mailsvc.config import Settings
from tests.fixtures.app import remember_secret


@pytest.fixture
def metrics_token() -> str:
    return remember_secret(f"metrics-{secrets.token_urlsafe(24)}")


@pytest.fixture
async def token_client(
    settings: Settings, metrics_token: str
) -> AsyncIterator[tuple[httpx.AsyncClient, io.StringIO]]:
    """A client of an app with METRICS_TOKEN set, and what that app logs meanwhile."""
    app: FastAPI = create_app(
        settings.model_copy(update={"metrics_token": SecretStr(metrics_token)})
    )
    root = logging.getLogger()
    logged = io.StringIO()
    capture = logging.StreamHandler(logged)
    capture.setFormatter(root.handlers[-1].formatter)  # mailsvc's own, added last
    root.addHandler(capture)
    try:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://t.test") as client:
                yield client, logged
    finally:
        root.removeHandler(capture)


async def test_metrics_refuse_a_missing_or_wrong_token_and_serve_the_right_one(
    token_client: tuple[httpx.AsyncClient, io.StringIO], metrics_token: str
) -> None:
    client, logged = token_client
    refusals = [
        await client.get("/metrics"),
        await client.get("/metrics", headers={"Authorization": "Bearer wrong-token"}),
        await client.get("/metrics", headers={"Authorization": f"Bearer {metrics_token}x"}),
        await client.get("/metrics", headers={"Authorization": f"Basic {metrics_token}"}),
        await client.get("/metrics", headers=[(b"authorization", "Bearer ünïcödé".encode())]),
    ]
    for refused in refusals:
        assert refused.status_code == 401, refused.text
        assert refused.headers["content-type"] == "application/problem+json"
        assert refused.headers["www-authenticate"] == "Bearer"
        assert refused.json()["code"] == "unauthorized"
        assert "mailsvc_" not in refused.text
        assert metrics_token not in refused.text

    served = await client.get("/metrics", headers={"Authorization": f"Bearer {metrics_token}"})
    assert served.status_code == 200
    assert "mailsvc_http_requests_total" in served.text
    assert metrics_token not in served.text
    # The refusals were logged (as requests), the token never.
    assert '"status": 401' in logged.getvalue()
    assert metrics_token not in logged.getvalue()


async def test_without_a_token_setting_metrics_stay_open(client: httpx.AsyncClient) -> None:
    response = await client.get("/metrics")
    assert response.status_code == 200
    assert "mailsvc_outbox_attempts_total" in response.text
