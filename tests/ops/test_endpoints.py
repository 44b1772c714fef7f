from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI

from mailsvc.app import create_app
from mailsvc.config import Settings
from tests.fixtures.net import free_port


async def test_health_needs_no_token(client: httpx.AsyncClient) -> None:
    response = await client.get("/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_ready_reports_each_dependency(client: httpx.AsyncClient) -> None:
    response = await client.get("/ready")
    assert response.status_code == 200
    assert response.json() == {
        "status": "ready",
        "checks": {"database": "ok", "redis": "ok", "migrations": "ok"},
    }


@pytest.fixture
async def app_without_redis(settings: Settings) -> AsyncIterator[FastAPI]:
    dead_redis = f"redis://127.0.0.1:{free_port()}/0"
    app = create_app(settings.model_copy(update={"redis_url": dead_redis}))
    async with app.router.lifespan_context(app):
        yield app


async def test_ready_is_503_naming_the_failing_part(app_without_redis: FastAPI) -> None:
    transport = httpx.ASGITransport(app=app_without_redis)
    async with httpx.AsyncClient(transport=transport, base_url="http://mailsvc.test") as client:
        response = await client.get("/ready")
    assert response.status_code == 503
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["code"] == "not_ready"
    assert problem["detail"] == "not ready: redis"
    assert problem["checks"]["database"] == "ok"
    assert problem["checks"]["redis"].startswith("unreachable")


async def test_metrics_count_requests_by_route_template(client: httpx.AsyncClient) -> None:
    await client.get("/health")
    response = await client.get("/metrics")
    assert response.status_code == 200
    assert 'mailsvc_http_requests_total{method="GET",route="/health",status="200"}' in (
        response.text
    )


async def test_request_id_is_echoed_or_generated(client: httpx.AsyncClient) -> None:
    echoed = await client.get("/health", headers={"X-Request-ID": "abc-123"})
    assert echoed.headers["x-request-id"] == "abc-123"
    hostile = await client.get("/health", headers={"X-Request-ID": "evil\tvalue"})
    assert hostile.headers["x-request-id"] != "evil\tvalue"
    assert len(hostile.headers["x-request-id"]) == 32


async def test_unknown_route_is_a_problem_document(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/nothing-here")
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["code"] == "not_found"


async def test_oversized_body_is_413(client: httpx.AsyncClient, settings: Settings) -> None:
    too_big = b"x" * (settings.max_request_body_bytes + 1)
    response = await client.post(
        "/auth/login", content=too_big, headers={"content-type": "application/json"}
    )
    assert response.status_code == 413
    assert response.json()["code"] == "body_too_large"
