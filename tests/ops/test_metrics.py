"""Each operational metric moves when its event happens, through the real peers:
sends through the aiosmtpd relay, webhook deliveries to a local receiver, searches,
bounces synced from Dovecot, and change-log trims; read from `GET /metrics`."""

from __future__ import annotations

import re
import secrets
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import update

from mailsvc.config import Settings
from mailsvc.event.repository import ChangeRepository
from mailsvc.event.retention import trim_change_log
from mailsvc.models import Change
from mailsvc.runtime import Runtime
from mailsvc.sync.engine import SyncEngine
from tests.fixtures.app import remember_secret
from tests.fixtures.dovecot import DovecotServer
from tests.fixtures.mail import SyncTarget
from tests.fixtures.smtp_server import SmtpRelay
from tests.fixtures.waiting import eventually
from tests.outbox.conftest import run_send_jobs
from tests.outbox.test_bounces_sync import add_entry, deliver, report
from tests.webhook.conftest import webhook_worker
from tests.webhook.helpers import deliveries, mail_account
from tests.webhook.receiver import Receiver

Headers = dict[str, str]
_SAMPLE = re.compile(r"^(?P<series>[a-z_]+(?:\{[^}]*\})?) (?P<value>\S+)$")


class Metrics:
    """A scrape of `/metrics`, read by series (`name{label="value",...}`)."""

    def __init__(self, text: str) -> None:
        self.samples: dict[str, float] = {}
        for line in text.splitlines():
            if match := _SAMPLE.match(line):
                self.samples[match["series"]] = float(match["value"])

    def __call__(self, name: str, **labels: str) -> float:
        """The series' value; 0 when this process has not exported it."""
        rendered = ",".join(f'{key}="{value}"' for key, value in labels.items())
        return self.samples.get(f"{name}{{{rendered}}}" if labels else name, 0.0)


async def scrape(client: httpx.AsyncClient) -> Metrics:
    response = await client.get("/metrics")
    assert response.status_code == 200, response.text
    return Metrics(response.text)


def grew(before: Metrics, after: Metrics, name: str, **labels: str) -> float:
    return after(name, **labels) - before(name, **labels)


def _mail(target: SyncTarget, **overrides: Any) -> dict[str, Any]:
    return {
        "account_id": str(target.account_id),
        "from": {"address": target.user.email},
        "to": [{"address": target.user.email}],
        "subject": "Metrics",
        "text": "Counted.\n",
        **overrides,
    }


async def _send(client: httpx.AsyncClient, auth: Headers, target: SyncTarget) -> str:
    response = await client.post("/api/send", json=_mail(target), headers=auth)
    assert response.status_code == 202, response.text
    entry_id: str = response.json()["id"]
    return entry_id


async def _status(client: httpx.AsyncClient, auth: Headers, entry_id: str) -> str:
    response = await client.get(f"/api/outbox/{entry_id}", headers=auth)
    assert response.status_code == 200, response.text
    status: str = response.json()["status"]
    return status


async def test_a_send_retried_once_counts_a_retry_its_delay_and_then_a_send(
    app: FastAPI,
    client: httpx.AsyncClient,
    auth: Headers,
    engine: SyncEngine,
    target: SyncTarget,
    smtp_relay: SmtpRelay,
    settings: Settings,
) -> None:
    before = await scrape(client)
    smtp_relay.fail_next("451 4.3.0 Try again later")
    entry_id = await _send(client, auth, target)
    await run_send_jobs(app, engine)
    assert await _status(client, auth, entry_id) == "sent"

    after = await scrape(client)
    assert grew(before, after, "mailsvc_outbox_attempts_total", outcome="retry") == 1
    assert grew(before, after, "mailsvc_outbox_attempts_total", outcome="sent") == 1
    assert grew(before, after, "mailsvc_outbox_attempts_total", outcome="failed") == 0
    assert grew(before, after, "mailsvc_outbox_retry_delay_seconds_count") == 1
    # The first backoff is SEND_RETRY_BASE_SECONDS with +-20% jitter.
    delay = grew(before, after, "mailsvc_outbox_retry_delay_seconds_sum")
    assert settings.send_retry_base_seconds * 0.8 <= delay <= settings.send_retry_base_seconds * 1.2


async def test_a_send_refused_for_good_counts_as_failed(
    app: FastAPI,
    client: httpx.AsyncClient,
    auth: Headers,
    engine: SyncEngine,
    target: SyncTarget,
    smtp_relay: SmtpRelay,
) -> None:
    before = await scrape(client)
    smtp_relay.fail_next("554 5.7.1 Rejected")
    entry_id = await _send(client, auth, target)
    await run_send_jobs(app, engine)
    assert await _status(client, auth, entry_id) == "failed"

    after = await scrape(client)
    assert grew(before, after, "mailsvc_outbox_attempts_total", outcome="failed") == 1
    assert grew(before, after, "mailsvc_outbox_attempts_total", outcome="sent") == 0
    assert grew(before, after, "mailsvc_outbox_retry_delay_seconds_count") == 0


async def test_a_synced_bounce_counts_once(
    client: httpx.AsyncClient, engine: SyncEngine, target: SyncTarget, dovecot: DovecotServer
) -> None:
    entry = await add_entry(engine, target.tenant_id, target.account_id)
    before = await scrape(client)
    await deliver(dovecot, target, report(entry.message_id_header))
    await engine.sync_account(target.tenant_id, target.account_id)
    await engine.sync_account(target.tenant_id, target.account_id, full=True)
    after = await scrape(client)
    assert grew(before, after, "mailsvc_outbox_bounces_total") == 1


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    server = Receiver()
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def webhook(
    client: httpx.AsyncClient, auth: Headers, receiver: Receiver
) -> AsyncIterator[dict[str, Any]]:
    """A webhook to the receiver, deleted after the test (no later worker posts to it)."""
    response = await client.post("/api/webhooks", json={"url": receiver.url}, headers=auth)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    remember_secret(created["secret"])
    yield created
    await client.delete(f"/api/webhooks/{created['id']}", headers=auth)


@pytest.fixture
def quick_webhook_settings(settings: Settings) -> Settings:
    return settings.model_copy(
        update={
            "webhook_timeout_seconds": 3.0,
            "webhook_retry_base_seconds": 0.2,
            "webhook_retry_max_seconds": 0.5,
            "webhook_max_attempts": 2,
        }
    )


async def test_webhook_attempts_count_by_outcome_and_successes_their_lag(
    app: FastAPI,
    client: httpx.AsyncClient,
    auth: Headers,
    tenant_id: str,
    engine: SyncEngine,
    dovecot: DovecotServer,
    smtp_relay: SmtpRelay,
    receiver: Receiver,
    webhook: dict[str, Any],
    quick_webhook_settings: Settings,
) -> None:
    receiver.status = 503
    account, _ = await mail_account(client, auth, dovecot, smtp_relay, messages=1)
    before = await scrape(client)
    async with webhook_worker(app, quick_webhook_settings):

        async def first_given_up() -> bool:
            found = await deliveries(client, auth, webhook["id"])
            return any(d["status"] == "failed" for d in found)

        # account.created: refused twice (WEBHOOK_MAX_ATTEMPTS=2), then given up.
        await eventually(first_given_up, within=30, what="a delivery given up")
        receiver.status = 200
        await engine.sync_account(tenant_id, account)

        async def rest_delivered() -> bool:
            found = await deliveries(client, auth, webhook["id"])
            return len(found) >= 3 and all(d["status"] != "pending" for d in found)

        await eventually(rest_delivered, within=30, what="the sync's events delivered")
    found = await deliveries(client, auth, webhook["id"])
    succeeded = sum(1 for d in found if d["status"] == "succeeded")
    failed = sum(1 for d in found if d["status"] == "failed")

    after = await scrape(client)
    assert failed >= 1
    assert succeeded >= 2  # message.created and sync.completed at least
    assert grew(before, after, "mailsvc_webhook_attempts_total", outcome="failed") == failed
    assert grew(before, after, "mailsvc_webhook_attempts_total", outcome="retry") == failed
    assert grew(before, after, "mailsvc_webhook_attempts_total", outcome="succeeded") == succeeded
    assert grew(before, after, "mailsvc_webhook_delivery_lag_seconds_count") == succeeded
    lag = grew(before, after, "mailsvc_webhook_delivery_lag_seconds_sum")
    assert 0 < lag < 60 * succeeded


async def test_searches_are_counted_and_timed_and_plain_lists_are_not(
    client: httpx.AsyncClient, auth: Headers
) -> None:
    before = await scrape(client)
    listed = await client.get("/api/messages", headers=auth)
    assert listed.status_code == 200, listed.text
    found = await client.get("/api/messages", params={"q": "invoice from:alice"}, headers=auth)
    assert found.status_code == 200, found.text
    original = await client.get("/api/sync/search", params={"query": "invoice"}, headers=auth)
    assert original.status_code == 200, original.text
    refused = await client.get("/api/messages", params={"q": "before:not-a-date"}, headers=auth)
    assert refused.status_code == 422, refused.text

    after = await scrape(client)
    assert grew(before, after, "mailsvc_search_requests_total", outcome="ok") == 2
    assert grew(before, after, "mailsvc_search_requests_total", outcome="invalid") == 1
    assert grew(before, after, "mailsvc_search_duration_seconds_count") == 3
    assert grew(before, after, "mailsvc_search_duration_seconds_sum") > 0


async def test_trimmed_changes_are_counted(
    app: FastAPI, client: httpx.AsyncClient, target: SyncTarget
) -> None:
    state: Runtime = app.state.mailsvc
    async with state.sessionmaker.begin() as session:
        changes = ChangeRepository(session, target.tenant_id)
        for _ in range(3):
            await changes.append(target.account_id, "test.old", {"n": secrets.token_hex(4)})
    async with state.sessionmaker.begin() as session:
        # Older than the retention window, as if written long ago.
        await session.execute(
            update(Change)
            .where(Change.tenant_id == target.tenant_id, Change.type == "test.old")
            .values(
                created_at=datetime.now(UTC)
                - timedelta(days=state.settings.change_retention_days + 1)
            )
        )
    before = await scrape(client)
    trimmed = await trim_change_log(
        {"settings": state.settings, "sessionmaker": state.sessionmaker}
    )
    after = await scrape(client)
    assert trimmed >= 3
    assert grew(before, after, "mailsvc_changes_trimmed_total") == trimmed


async def test_a_webhook_delivery_given_up_without_a_request_counts_as_dropped(
    app: FastAPI,
    client: httpx.AsyncClient,
    auth: Headers,
    tenant_id: str,
    dovecot: DovecotServer,
    smtp_relay: SmtpRelay,
    receiver: Receiver,
    webhook: dict[str, Any],
    quick_webhook_settings: Settings,
) -> None:
    account, _ = await mail_account(client, auth, dovecot, smtp_relay, messages=0)
    state: Runtime = app.state.mailsvc
    async with state.sessionmaker.begin() as session:
        # A change no event schema describes: its delivery cannot be encoded.
        await ChangeRepository(session, tenant_id).append(account, "test.unknown", {})
    before = await scrape(client)
    async with webhook_worker(app, quick_webhook_settings):

        async def both_done() -> bool:
            found = await deliveries(client, auth, webhook["id"])
            return len(found) == 2 and all(d["status"] != "pending" for d in found)

        await eventually(both_done, within=30, what="both deliveries finished")
    found = await deliveries(client, auth, webhook["id"])
    [dropped] = [d for d in found if d["status"] == "failed"]
    assert dropped["last_error"].startswith("the event cannot be encoded")
    after = await scrape(client)
    assert grew(before, after, "mailsvc_webhook_deliveries_dropped_total") == 1
    assert grew(before, after, "mailsvc_webhook_attempts_total", outcome="succeeded") == 1
    assert grew(before, after, "mailsvc_webhook_attempts_total", outcome="failed") == 0
    assert len(receiver.requests) == 1
