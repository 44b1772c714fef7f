"""Redis killed and started again empty, under a running `mailsvc serve` and `worker`.

Before the outage: accounts in IDLE (leases in Redis), a send scheduled for later
(a deferred arq job) and a webhook delivery waiting for its retry (another one).
Redis is SIGKILLed and comes back without persistence, so all of it is gone.

While it is down the api answers 503 `dependency_unavailable` (problem+json, with
`Retry-After`) where it needs Redis, `/health` stays 200 and `/ready` says 503.
Afterwards, with neither process restarted: requests succeed again, every account
is back in IDLE (its lease re-taken), and what PostgreSQL says should exist is
re-created by the worker's sweeps: the scheduled send goes out once, not before its
time, and the pending delivery arrives once.
"""

from __future__ import annotations

import asyncio
import secrets
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from mailsvc.auth.tokens import TokenCodec
from mailsvc.config import Settings
from tests.fixtures.app import account_body
from tests.fixtures.dovecot import DovecotServer
from tests.fixtures.net import LOOPBACK, free_port
from tests.fixtures.private_servers import (
    PrivateRedis,
    kill_mailsvc,
    private_redis,
    start_mailsvc,
)
from tests.fixtures.processes import service_env, wait_until_serving
from tests.fixtures.smtp_server import SmtpRelay
from tests.fixtures.waiting import eventually
from tests.webhook.receiver import Receiver

pytestmark = pytest.mark.faults

TENANT = "fault-redis"
ACCOUNTS = 2
LEASE_TTL_SECONDS = 4
# The webhook's first retry comes after this (+-20%); Redis is down and back before.
WEBHOOK_RETRY_SECONDS = 20
SEND_AFTER_SECONDS = 20
PROBLEM = "application/problem+json"


async def test_redis_restarted_empty_is_recovered_without_restarting_mailsvc(
    settings: Settings,
    isolated_database: str,
    dovecot: DovecotServer,
    smtp_relay: SmtpRelay,
    tmp_path: Path,
) -> None:
    receiver = Receiver(status=500)
    await receiver.start()
    port = free_port()
    token = TokenCodec(settings).issue(
        subject="test",
        tenants=[TENANT],
        scopes=["accounts:write", "mail:read", "mail:send", "webhooks:manage", "accounts:read"],
        expires_in=900,
    )
    with private_redis() as redis_server:
        env = service_env(
            settings,
            database_url=isolated_database,
            redis_url=redis_server.url,
            ca_file=dovecot.ca_cert_path,
            data_dir=tmp_path,
            IDLE_LEASE_TTL_SECONDS=str(LEASE_TTL_SECONDS),
            # The test polls the status of every account; the limiter stays on (it is
            # the first Redis call of a request) but out of the way.
            RATE_LIMIT_REQUESTS_PER_MINUTE="100000",
            RATE_LIMIT_REQUESTS_PER_HOUR="1000000",
            IDLE_SCAN_INTERVAL_SECONDS="1",
            WEBHOOK_RETRY_BASE_SECONDS=str(WEBHOOK_RETRY_SECONDS),
        )
        api = await start_mailsvc(
            "serve", "--host", LOOPBACK, "--port", str(port), env=env, log=tmp_path / "api.log"
        )
        worker = await start_mailsvc("worker", env=env, log=tmp_path / "worker.log")
        try:
            async with httpx.AsyncClient(
                base_url=f"http://{LOOPBACK}:{port}",
                headers={"Authorization": f"Bearer {token}"},
                timeout=30,
            ) as client:
                await wait_until_serving(client)
                await _check_recovery(client, redis_server, receiver, dovecot, smtp_relay)
            assert api.returncode is None, "the api process died"
            assert worker.returncode is None, "the worker process died"
        finally:
            await kill_mailsvc(api)
            await kill_mailsvc(worker)
            await receiver.stop()


async def _check_recovery(
    client: httpx.AsyncClient,
    redis_server: PrivateRedis,
    receiver: Receiver,
    dovecot: DovecotServer,
    smtp_relay: SmtpRelay,
) -> None:
    hook = await client.post(
        "/api/webhooks", json={"url": receiver.url, "event_types": ["account.created"]}
    )
    assert hook.status_code == 201, hook.text
    account_ids: list[str] = []
    users = []
    for _ in range(ACCOUNTS):
        user = dovecot.add_user(f"fr-{secrets.token_hex(4)}", secrets.token_urlsafe(10))
        users.append(user)
        created = await client.post(
            "/api/accounts",
            json=account_body(dovecot, smtp_relay, user),
            params={"verify": "false"},
        )
        assert created.status_code == 201, created.text
        account_ids.append(created.json()["id"])

    async def all_idle() -> bool:
        for account_id in account_ids:
            response = await client.get(f"/api/sync/status/{account_id}")
            if response.status_code != 200 or not response.json()["idle"]["connected"]:
                return False
        return True

    await eventually(all_idle, within=60, what="every account in IDLE")
    # One failed attempt per account.created: each delivery now waits for its retry,
    # whose arq job (deferred) lives in Redis only.
    await eventually(
        lambda: _true(len(receiver.requests) >= ACCOUNTS),
        within=30,
        what="first webhook attempts",
    )
    pending = {request.delivery_id for request in receiver.requests}
    assert len(pending) == ACCOUNTS
    receiver.status = 200

    send_at = datetime.now(UTC) + timedelta(seconds=SEND_AFTER_SECONDS)
    scheduled = await client.post(
        "/api/send",
        json={
            "account_id": account_ids[0],
            "to": [{"address": users[1].email}],
            "subject": "scheduled before the outage",
            "text": "hello",
            "send_at": send_at.isoformat(),
        },
    )
    assert scheduled.status_code == 202, scheduled.text
    message_id = scheduled.json()["message_id"].encode()

    redis_server.kill()
    down = await client.get("/api/messages", params={"limit": 1})
    assert down.status_code == 503, down.text
    assert down.headers["content-type"] == PROBLEM
    assert down.json()["code"] == "dependency_unavailable"
    assert int(down.headers["retry-after"]) > 0
    sent_while_down = await client.post(
        "/api/send",
        json={"account_id": account_ids[0], "to": [{"address": users[1].email}], "text": "x"},
    )
    assert sent_while_down.status_code == 503, sent_while_down.text
    assert sent_while_down.json()["code"] == "dependency_unavailable"
    assert (await client.get("/health")).status_code == 200
    not_ready = await client.get("/ready")
    assert not_ready.status_code == 503, not_ready.text
    # Long enough for every IDLE watcher to give up its unconfirmed lease.
    await asyncio.sleep(LEASE_TTL_SECONDS)
    redis_server.start()  # empty: no persistence

    async def answering() -> bool:
        return (await client.get("/api/messages", params={"limit": 1})).status_code == 200

    await eventually(answering, within=15, what="requests answered again")
    assert (await client.get("/ready")).status_code == 200
    await eventually(all_idle, within=LEASE_TTL_SECONDS + 20, what="every account in IDLE again")

    def sends() -> int:
        return sum(message_id in message.data for message in smtp_relay.received)

    entry_url = f"/api/outbox/{uuid.UUID(scheduled.json()['id'])}"

    async def send_recorded() -> bool:
        return bool((await client.get(entry_url)).json()["status"] == "sent")

    # Its arq job is gone: only the outbox sweep can start it now.
    await eventually(send_recorded, within=SEND_AFTER_SECONDS + 60, what="the scheduled send")
    entry = (await client.get(entry_url)).json()
    assert datetime.fromisoformat(entry["sent_at"].replace("Z", "+00:00")) >= send_at
    assert entry["attempts"] == 1
    assert sends() == 1

    async def deliveries_recorded() -> bool:
        page = await client.get(f"/api/webhooks/{hook.json()['id']}/deliveries")
        items = page.json()["items"]
        return len(items) == ACCOUNTS and all(d["status"] == "succeeded" for d in items)

    # Their retry jobs are gone too: only the webhook sweep can deliver them now.
    await eventually(
        deliveries_recorded,
        within=WEBHOOK_RETRY_SECONDS * 1.2 + 40,
        what="the pending webhook deliveries",
    )
    accepted = [request.delivery_id for request in receiver.accepted()]
    assert sorted(accepted) == sorted(pending), accepted


async def _true(value: bool) -> bool:
    return value
