"""The composition root: what each role builds, and that a failed start-up leaves nothing."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import get_type_hints

import asyncpg
import pytest
from arq.connections import ArqRedis

from mailsvc.auth.tokens import TokenCodec
from mailsvc.config import Settings
from mailsvc.event.listener import ChangeListener
from mailsvc.kit.resources import Resources
from mailsvc.outbox.dispatch import OutboxDispatcher
from mailsvc.runtime import Role, open_runtime
from mailsvc.search.backend import SearchBackend
from mailsvc.worker.settings import WorkerContext, job_context
from tests.fixtures.databases import asyncpg_dsn, create_database, drop_database


@pytest.fixture
async def own_database(postgres_server_url: str) -> AsyncIterator[str]:
    """A database no other test holds connections to, so its backends can be counted."""
    url, name = await create_database(postgres_server_url, prefix="mailsvc_runtime")
    yield url
    await drop_database(postgres_server_url, name)


async def _backends(database_url: str) -> int:
    probe = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        count: int = await probe.fetchval(
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        return count
    finally:
        await probe.close()


async def test_the_api_runtime_registers_what_endpoints_ask_for(settings: Settings) -> None:
    async with open_runtime(settings, role=Role.API) as runtime:
        components = runtime.components()
        assert components[Resources] is runtime
        assert isinstance(components[TokenCodec], TokenCodec)
        assert isinstance(components[ChangeListener], ChangeListener)
        assert isinstance(components[OutboxDispatcher], OutboxDispatcher)
        assert components[SearchBackend] is runtime.search
        assert runtime.search.name == settings.search_backend
        assert runtime.webhooks is None
        # The api reads indexes; only workers write them.
        assert runtime.search_indexer is None
        # The test settings switch IDLE off: no watchers, so no parser pool either.
        assert runtime.idle is None
        assert runtime.sync_engine is None


async def test_the_worker_context_has_every_key_its_jobs_read(settings: Settings) -> None:
    async with open_runtime(settings, role=Role.WORKER) as runtime:
        assert runtime.outbox is None
        assert runtime.idle is None
        arq = ArqRedis(connection_pool=runtime.redis.connection_pool)
        context = job_context(runtime, arq, "worker-under-test")
        assert set(context) == set(get_type_hints(WorkerContext))
        assert all(value is not None for value in context.values())
        assert context["sync_engine"] is runtime.sync_engine
        assert context["webhook_deliverer"] is runtime.webhooks
        assert context["search_indexer"] is runtime.search_indexer


@pytest.mark.parametrize("backend", ["tantivy", "postgres"])
async def test_search_backend_is_the_configured_one(
    settings: Settings, backend: str, tmp_path: Path
) -> None:
    chosen = settings.model_copy(update={"search_backend": backend, "search_index_dir": tmp_path})
    async with open_runtime(chosen, role=Role.API) as runtime:
        assert runtime.search.name == backend


async def test_a_failing_start_up_step_releases_everything_built_before_it(
    settings: Settings, own_database: str, tmp_path: Path
) -> None:
    # The CA file is read last, after the listeners, the parser pool, the search
    # indexer and the webhook fan-out have started: a file that is not PEM fails the
    # start-up there.
    not_a_certificate = tmp_path / "ca.pem"
    not_a_certificate.write_text("this is not a certificate\n")
    broken = settings.model_copy(
        update={"database_url": own_database, "mail_tls_ca_file": not_a_certificate}
    )
    running_before = asyncio.all_tasks()

    with pytest.raises(ssl.SSLError):
        async with open_runtime(broken, role=Role.WORKER):
            pytest.fail("the runtime started with an unreadable CA file")

    # The listeners', the indexer's and the fan-out's tasks were stopped, not left
    # behind ...
    left = {task.get_name() for task in asyncio.all_tasks() - running_before}
    assert left == set()
    # ... and their connections and the engine's pool were closed.
    for _ in range(50):
        if await _backends(own_database) == 0:
            break
        await asyncio.sleep(0.1)
    assert await _backends(own_database) == 0
