"""Webhook fixtures: a receiver, webhooks that are deleted after the test, and the
worker side (fan-out task and arq delivery jobs) running in-process."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from arq.connections import ArqRedis
from fastapi import FastAPI
from sqlalchemy import select

from mailsvc.config import Settings
from mailsvc.event.listener import ChangeListener, listen_dsn
from mailsvc.models import Change
from mailsvc.runtime import Runtime
from mailsvc.webhook.client import WebhookClient
from mailsvc.webhook.deliverer import WebhookDeliverer
from mailsvc.webhook.fanout import WebhookFanout
from mailsvc.webhook.tasks import deliver_job_function
from tests.fixtures.app import remember_secret
from tests.fixtures.arq_worker import running_worker
from tests.webhook.receiver import Receiver

Headers = dict[str, str]
CreateWebhook = Callable[..., Awaitable[dict[str, Any]]]


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    server = Receiver()
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
def webhook_settings(settings: Settings) -> Settings:
    """The run's settings with retries within a test's patience."""
    return settings.model_copy(
        update={
            "webhook_timeout_seconds": 3.0,
            "webhook_retry_base_seconds": 0.2,
            "webhook_retry_max_seconds": 1.0,
            "webhook_max_attempts": 50,
        }
    )


@pytest.fixture
async def create_webhook(client: httpx.AsyncClient) -> AsyncIterator[CreateWebhook]:
    """POST /api/webhooks; every webhook made is deleted after the test, so no later
    test's worker delivers to a receiver that is gone."""
    made: list[tuple[str, Headers]] = []

    async def create(auth: Headers, url: str, **fields: Any) -> dict[str, Any]:
        response = await client.post("/api/webhooks", json={"url": url, **fields}, headers=auth)
        assert response.status_code == 201, response.text
        created: dict[str, Any] = response.json()
        remember_secret(created["secret"])
        made.append((created["id"], auth))
        return created

    yield create
    for webhook_id, auth in made:
        await client.delete(f"/api/webhooks/{webhook_id}", headers=auth)


@asynccontextmanager
async def webhook_worker(app: FastAPI, settings: Settings) -> AsyncIterator[None]:
    """The fan-out task and an arq worker for delivery jobs, as `mailsvc worker` runs
    them, until the block ends."""
    state: Runtime = app.state.mailsvc
    pool = ArqRedis(connection_pool=state.redis.connection_pool)
    client = WebhookClient(timeout_seconds=settings.webhook_timeout_seconds)
    listener = ChangeListener(listen_dsn(settings.async_database_url))
    fanout = WebhookFanout(sessionmaker=state.sessionmaker, arq=pool, listener=listener)
    deliverer = WebhookDeliverer(
        sessionmaker=state.sessionmaker,
        secrets=state.secrets,
        settings=settings,
        arq=pool,
        client=client,
    )
    listener.start()
    fanout.start()
    try:
        async with running_worker(
            app,
            [deliver_job_function(settings)],
            {"webhook_deliverer": deliverer, "sessionmaker": state.sessionmaker},
        ):
            yield
    finally:
        await fanout.stop()
        await listener.stop()
        await client.aclose()


async def tenant_changes(app: FastAPI, tenant_id: str) -> list[Change]:
    """Every change of the tenant, in id order."""
    state: Runtime = app.state.mailsvc
    async with state.sessionmaker() as session:
        result = await session.scalars(
            select(Change).where(Change.tenant_id == tenant_id).order_by(Change.id)
        )
        return list(result.all())


def by_account(events: list[dict[str, Any]]) -> dict[uuid.UUID, list[int]]:
    """The `seq` of each account's events, in the order given."""
    seqs: dict[uuid.UUID, list[int]] = {}
    for event in events:
        seqs.setdefault(uuid.UUID(event["account_id"]), []).append(event["seq"])
    return seqs
