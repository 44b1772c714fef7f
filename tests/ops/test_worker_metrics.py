"""The worker's `GET /metrics` (WORKER_METRICS_PORT) and the outbox gauge its sweep sets."""

from __future__ import annotations

import asyncio
import contextlib
import re
import secrets
import signal
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from arq.connections import ArqRedis
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.pool import NullPool

from mailsvc.account.logins import AccountLogins
from mailsvc.account.repository import AccountRepository
from mailsvc.config import Settings
from mailsvc.kit.crypto import SecretBox
from mailsvc.kit.redis import create_redis
from mailsvc.ops.metrics import METRICS_CONTENT_TYPE, render_metrics
from mailsvc.ops.worker_metrics import MAX_HEAD_BYTES, MetricsServer
from mailsvc.outbox.dispatch import OutboxJobContext, sweep_outbox
from mailsvc.outbox.repository import OutboxRepository
from mailsvc.outbox.sender import OutboxSender
from tests.fixtures.app import remember_secret
from tests.fixtures.dovecot import DovecotServer
from tests.fixtures.mail import parked_account
from tests.fixtures.net import LOOPBACK, free_port, port_accepts
from tests.fixtures.processes import MAILSVC, service_env
from tests.fixtures.waiting import eventually


def _gauge(text: str, status: str) -> float | None:
    """The value of `mailsvc_outbox_entries{status=...}` in a scrape, None if absent."""
    found = re.search(rf'^mailsvc_outbox_entries{{status="{status}"}} (\S+)$', text, re.M)
    return float(found[1]) if found else None


# --- the outbox gauge, set by the sweep ----------------------------------------------


@pytest.fixture
async def isolated_sessionmaker(
    isolated_database: str,
) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = create_async_engine(isolated_database, poolclass=NullPool)
    yield async_sessionmaker(engine, expire_on_commit=False)
    await engine.dispose()


async def _add_entries(
    sessionmaker: async_sessionmaker[AsyncSession], tenant_id: str, statuses: list[str]
) -> None:
    """An account of `tenant_id` with one outbox entry per status, none of them due."""
    later = datetime.now(UTC) + timedelta(days=30)
    async with sessionmaker.begin() as session:
        account = await AccountRepository(session, tenant_id).add(parked_account())
        for status in statuses:
            await OutboxRepository(session, tenant_id).add(
                {
                    "account_id": account.id,
                    "status": status,
                    # A send scheduled a month ahead, or (sending) a lease that long.
                    "send_at": later,
                    "next_attempt_at": later,
                    "message_id_header": f"<{uuid.uuid4()}@example.com>",
                    "envelope_from": "user@example.com",
                    "envelope_to": ["someone@example.org"],
                    "raw_mime": b"Subject: later\r\n\r\nHello.\r\n",
                }
            )


async def test_the_sweep_sets_the_gauge_to_the_entries_in_flight_across_tenants(
    settings: Settings,
    isolated_sessionmaker: async_sessionmaker[AsyncSession],
    isolated_redis: str,
) -> None:
    await _add_entries(isolated_sessionmaker, "gauge-a", ["queued", "queued", "sent"])
    await _add_entries(isolated_sessionmaker, "gauge-b", ["queued", "sending", "cancelled"])
    redis = create_redis(isolated_redis)
    arq = ArqRedis(connection_pool=redis.connection_pool)
    ctx = OutboxJobContext(
        redis=arq,
        sessionmaker=isolated_sessionmaker,
        outbox_sender=OutboxSender(
            sessionmaker=isolated_sessionmaker,
            logins=AccountLogins(
                sessionmaker=isolated_sessionmaker,
                redis=redis,
                secrets=SecretBox(*settings.encryption_keys()),
                settings=settings,
            ),
            settings=settings,
            arq=arq,
        ),
    )
    try:
        # Nothing is due: the sweep enqueues nothing, and only counts.
        assert await sweep_outbox(ctx) == 0
        scraped = render_metrics().decode()
        assert (_gauge(scraped, "queued"), _gauge(scraped, "sending")) == (3.0, 1.0)

        await _add_entries(isolated_sessionmaker, "gauge-c", ["sending"])
        await sweep_outbox(ctx)
        scraped = render_metrics().decode()
        assert (_gauge(scraped, "queued"), _gauge(scraped, "sending")) == (3.0, 2.0)
    finally:
        await redis.aclose()


# --- a real `mailsvc worker` -------------------------------------------------------


async def test_a_worker_serves_its_metrics_behind_the_token(
    settings: Settings,
    isolated_database: str,
    isolated_sessionmaker: async_sessionmaker[AsyncSession],
    isolated_redis: str,
    dovecot: DovecotServer,
    tmp_path: Path,
) -> None:
    await _add_entries(isolated_sessionmaker, "worker-metrics", ["queued", "queued", "sending"])
    token = remember_secret(f"metrics-{secrets.token_urlsafe(24)}")
    port = free_port()
    env = service_env(
        settings,
        database_url=isolated_database,
        redis_url=isolated_redis,
        ca_file=dovecot.ca_cert_path,
        data_dir=tmp_path,
        WORKER_METRICS_PORT=str(port),
        METRICS_TOKEN=token,
    )
    worker = await asyncio.create_subprocess_exec(
        MAILSVC, "worker", env=env, cwd=tmp_path,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    try:

        async def listening() -> bool:
            assert worker.returncode is None, "the worker exited"
            return await asyncio.to_thread(port_accepts, port)

        await eventually(listening, within=60, what="worker metrics port open")
        async with httpx.AsyncClient(base_url=f"http://{LOOPBACK}:{port}") as client:
            refusals = [
                await client.get("/metrics"),
                await client.get("/metrics", headers={"Authorization": "Bearer wrong"}),
                await client.get("/metrics", headers={"Authorization": f"Bearer {token}x"}),
                await client.get("/metrics", headers={"Authorization": f"Basic {token}"}),
                await client.get("/metrics", headers=[(b"authorization", "Bearer é".encode())]),
            ]
            for refused in refusals:
                assert refused.status_code == 401, refused.text
                assert refused.headers["www-authenticate"] == "Bearer"
                assert "mailsvc_" not in refused.text
                assert token not in refused.text

            right = {"Authorization": f"Bearer {token}"}
            elsewhere = await client.get("/", headers=right)
            assert elsewhere.status_code == 404

            async def scrape() -> httpx.Response:
                response = await client.get("/metrics", headers=right)
                assert response.status_code == 200, response.text
                return response

            # The sweep runs at start-up; the port may open just before it has.
            async def gauge_set() -> bool:
                return _gauge((await scrape()).text, "queued") is not None

            await eventually(gauge_set, within=30, what="the worker's first sweep")
            served = await scrape()
            assert served.headers["content-type"] == METRICS_CONTENT_TYPE
            assert served.headers["connection"] == "close"
            assert int(served.headers["content-length"]) == len(served.content)
            # What only the worker counts, and the gauge its sweep set.
            assert "mailsvc_webhook_attempts_total" in served.text
            assert "mailsvc_changes_trimmed_total" in served.text
            assert (_gauge(served.text, "queued"), _gauge(served.text, "sending")) == (2.0, 1.0)
    finally:
        if worker.returncode is None:
            worker.send_signal(signal.SIGTERM)
        await asyncio.wait_for(worker.wait(), 30)
    # Closed with the worker's runtime.
    assert worker.returncode == 0
    assert not await asyncio.to_thread(port_accepts, port)


# --- the server against hostile or odd clients --------------------------------------


@pytest.fixture
async def open_server() -> AsyncIterator[MetricsServer]:
    """A server without METRICS_TOKEN and with a short deadline per connection."""
    server = MetricsServer(token=None, timeout_seconds=0.5)
    await server.start(host=LOOPBACK, port=0)
    yield server
    await server.close()


async def _exchange(port: int, request: bytes) -> bytes:
    """Send `request`, read until the server closes, and return what it sent."""
    reader, writer = await asyncio.open_connection(LOOPBACK, port)
    try:
        writer.write(request)
        await writer.drain()
        return await asyncio.wait_for(reader.read(), 5)
    finally:
        writer.close()


async def test_without_a_token_the_metrics_are_open_and_only_get_metrics_is_served(
    open_server: MetricsServer,
) -> None:
    async with httpx.AsyncClient(base_url=f"http://{LOOPBACK}:{open_server.port}") as client:
        served = await client.get("/metrics?name[]=x")
        assert served.status_code == 200
        assert "mailsvc_outbox_attempts_total" in served.text
        assert (await client.get("/metrics/x")).status_code == 404
        posted = await client.post("/metrics", content=b"x" * 100)
        assert posted.status_code == 405
        assert posted.headers["allow"] == "GET"
    garbage = await _exchange(open_server.port, b"hello there\r\n\r\n")
    assert garbage.startswith(b"HTTP/1.1 400 Bad Request\r\n")


async def test_an_oversized_request_head_is_refused(open_server: MetricsServer) -> None:
    head = b"GET /metrics HTTP/1.1\r\nX-Filler: " + b"a" * MAX_HEAD_BYTES + b"\r\n\r\n"
    answer = await _exchange(open_server.port, head)
    assert answer.startswith(b"HTTP/1.1 431 Request Header Fields Too Large\r\n")
    assert b"mailsvc_" not in answer


async def test_a_slow_or_silent_client_is_dropped_after_the_deadline(
    open_server: MetricsServer,
) -> None:
    loop = asyncio.get_running_loop()
    started = loop.time()
    # Silent, and a head that never ends: both get nothing and a closed connection.
    assert await _exchange(open_server.port, b"") == b""
    assert await _exchange(open_server.port, b"GET /metrics HTTP/1.1\r\nHost: x\r\n") == b""
    assert loop.time() - started < 3


async def test_closing_drops_open_connections_and_the_port(
    open_server: MetricsServer, caplog: pytest.LogCaptureFixture
) -> None:
    port = open_server.port
    reader, writer = await asyncio.open_connection(LOOPBACK, port)
    try:
        writer.write(b"GET /metrics HTTP/1.1\r\n")
        await writer.drain()
        await asyncio.sleep(0.1)  # the server is now waiting for the rest of the head
        await asyncio.wait_for(open_server.close(), 0.4)  # before the deadline ends it
        with contextlib.suppress(ConnectionError):
            assert await asyncio.wait_for(reader.read(), 1) == b""
    finally:
        writer.close()
    assert not await asyncio.to_thread(port_accepts, port)
    # The handler ended on its own: asyncio has no cancelled callback to complain about.
    assert not [record for record in caplog.records if record.levelname == "ERROR"]
