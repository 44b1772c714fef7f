"""Webhook deliveries survive a worker killed in the middle of them: a real
`mailsvc worker` is SIGKILLed while requests are in flight, another one finishes."""

from __future__ import annotations

import asyncio
import signal
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import select
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from mailsvc.auth.tokens import TokenCodec
from mailsvc.config import Settings
from mailsvc.event.repository import FeedPosition
from mailsvc.event.schemas import encode_position
from mailsvc.models import Change
from tests.fixtures.app import remember_secret
from tests.fixtures.dovecot import DovecotServer
from tests.fixtures.net import free_port
from tests.fixtures.processes import MAILSVC, service_env, wait_until_serving
from tests.fixtures.smtp_server import SmtpRelay
from tests.fixtures.waiting import eventually
from tests.webhook.conftest import by_account
from tests.webhook.helpers import mail_account
from tests.webhook.receiver import Receiver, signature_is_valid

TENANT = "webhook-restart"


async def _start(
    args: tuple[str, ...], env: dict[str, str], cwd: Path
) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        MAILSVC, *args, env=env, cwd=cwd,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip


async def _kill(process: asyncio.subprocess.Process) -> None:
    if process.returncode is None:
        process.send_signal(signal.SIGKILL)
    await process.wait()


async def _event_ids(database_url: str) -> set[str]:
    engine = create_async_engine(database_url, poolclass=NullPool)
    try:
        async with engine.connect() as connection:
            rows = await connection.execute(
                select(Change.txid, Change.id).where(Change.tenant_id == TENANT)
            )
            return {encode_position(FeedPosition(txid, change_id)) for txid, change_id in rows}
    finally:
        await engine.dispose()


async def test_killing_the_worker_mid_delivery_loses_no_event(
    settings: Settings,
    isolated_database: str,
    isolated_redis: str,
    dovecot: DovecotServer,
    smtp_relay: SmtpRelay,
    receiver: Receiver,
    tmp_path: Path,
) -> None:
    env = service_env(
        settings,
        database_url=isolated_database,
        redis_url=isolated_redis,
        ca_file=dovecot.ca_cert_path,
        data_dir=tmp_path,
        IDLE_ENABLED="false",
        # A claim is held for the timeout and 5 s: a dead worker's delivery is taken
        # over by the sweep soon after.
        WEBHOOK_TIMEOUT_SECONDS="3",
        WEBHOOK_RETRY_BASE_SECONDS="0.5",
        WEBHOOK_RETRY_MAX_SECONDS="2",
    )
    port = free_port()
    token = TokenCodec(settings).issue(
        subject="test",
        tenants=[TENANT],
        scopes=["accounts:write", "webhooks:manage"],
        expires_in=600,
    )
    # Slow enough that deliveries are in flight whenever the worker dies.
    receiver.delay = 0.5
    api = await _start(("serve", "--host", "127.0.0.1", "--port", str(port)), env, tmp_path)
    workers = [await _start(("worker",), env, tmp_path)]
    try:
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{port}", headers={"Authorization": f"Bearer {token}"}
        ) as client:
            await wait_until_serving(client, within=60)
            created = await client.post("/api/webhooks", json={"url": receiver.url})
            assert created.status_code == 201, created.text
            webhook: dict[str, Any] = created.json()
            remember_secret(webhook["secret"])
            accounts = [
                (await mail_account(client, {}, dovecot, smtp_relay, messages=4))[0]
                for _ in range(2)
            ]

            async def deliveries_in_flight() -> bool:
                return len(receiver.requests) >= 3 and bool(receiver.in_flight)

            await eventually(deliveries_in_flight, within=60, what="deliveries in flight")
            cut_short = set(receiver.in_flight)
            await _kill(workers[0])
            receiver.delay = 0
            workers.append(await _start(("worker",), env, tmp_path))

            async def every_event_delivered() -> bool:
                expected = await _event_ids(isolated_database)
                # The worker died before it could read an answer, so whatever the
                # receiver did, each delivery cut short is sent (and answered) again.
                again = Counter(r.delivery_id for r in receiver.accepted())
                return {r.event["id"] for r in receiver.accepted()} >= expected and all(
                    again[cut] >= 1 and sum(r.delivery_id == cut for r in receiver.requests) >= 2
                    for cut in cut_short
                )

            await eventually(every_event_delivered, within=120, what="every event delivered")
    finally:
        for process in [api, *workers]:
            await _kill(process)

    expected = await _event_ids(isolated_database)
    # At least once per delivery id; after deduplicating by id, each event exactly once.
    first_arrivals: dict[str, dict[str, Any]] = {}
    for request in receiver.accepted():
        first_arrivals.setdefault(request.delivery_id, request.event)
    events = list(first_arrivals.values())
    assert sorted(event["id"] for event in events) == sorted(expected)
    # Each account's events arrived in order, the one cut short included.
    assert set(by_account(events)) == set(accounts)
    for account_id, seqs in by_account(events).items():
        assert seqs == sorted(seqs), account_id
    # The deliveries cut short went again under the same Webhook-Id, with the same body.
    # (The receiver may have answered the first request too, into the dead worker's
    # socket: for it, that was a delivery; the second one is deduplicated by its id.)
    for cut in cut_short:
        requests = [r for r in receiver.requests if r.delivery_id == cut]
        assert len(requests) >= 2
        assert len({r.body for r in requests}) == 1
    assert all(signature_is_valid(webhook["secret"], r) for r in receiver.requests)
