"""`mailsvc search reindex`, run as the real command against real servers.

After it, the index holds exactly the messages PostgreSQL holds (each once), on
either backend; it reports progress on stderr and a summary on stdout, and waits,
saying so, while a worker holds the tenant's index writer lease.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from mailsvc.config import Settings
from mailsvc.kit.db import create_engine, create_sessionmaker
from mailsvc.kit.redis import create_redis
from mailsvc.kit.repository import TenantScope
from mailsvc.models import Message
from mailsvc.search.backend import IndexState
from mailsvc.search.backends import open_search_backend
from mailsvc.search.filter import MessageFilter
from mailsvc.search.indexer import search_lease_key
from mailsvc.search.queue_repository import SearchQueueRepository
from mailsvc.sync.engine import SyncEngine
from tests.fixtures import imap_client
from tests.fixtures.dovecot import DovecotServer
from tests.fixtures.mail import SyncTarget
from tests.fixtures.processes import MAILSVC, run_mailsvc
from tests.search.backend_conformance import all_hits
from tests.search.stored import new_tenant, store
from tests.sync.messages import make_message

BACKENDS = ("tantivy", "postgres")


def _env(settings: Settings, data_dir: Path, **overrides: str) -> dict[str, str]:
    """The command's settings: the run's servers and secrets, its own DATA_DIR."""
    assert settings.jwt_secret is not None
    assert settings.encryption_key is not None
    return {
        "ENVIRONMENT": "production",
        "DATABASE_URL": settings.async_database_url,
        "REDIS_URL": settings.required_redis_url,
        "JWT_SECRET": settings.jwt_secret.get_secret_value(),
        "ENCRYPTION_KEY": settings.encryption_key.get_secret_value(),
        "DATA_DIR": str(data_dir),
        "LOG_LEVEL": "WARNING",
        **overrides,
    }


@pytest.fixture
async def sessions(settings: Settings) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = create_engine(settings.async_database_url, pool_size=2)
    yield create_sessionmaker(engine)
    await engine.dispose()


async def _index_of(
    settings: Settings,
    sessions: async_sessionmaker[AsyncSession],
    *,
    backend: str,
    data_dir: Path,
    tenant_id: str,
) -> tuple[IndexState, list[uuid.UUID]]:
    """The tenant's index state and every document id in it, read the way the api
    reads it (`all_hits` fails on a document held twice)."""

    async def no_rebuild(_: str) -> None:
        raise AssertionError("the index should be sound after the command")

    search = open_search_backend(
        settings.model_copy(update={"search_backend": backend, "data_dir": data_dir}),
        sessionmaker=sessions,
        request_rebuild=no_rebuild,
    )
    try:
        state = await search.state(tenant_id)
        hits = await all_hits(search, tenant_id, MessageFilter(), order="newest", page_size=100)
        return state, [hit.message_id for hit in hits]
    finally:
        await search.aclose()


async def _stored(sessions: async_sessionmaker[AsyncSession], tenant_id: str) -> list[uuid.UUID]:
    async with sessions() as session:
        return sorted(await session.scalars(TenantScope(session, tenant_id).select(Message.id)))


async def _queued(sessions: async_sessionmaker[AsyncSession], tenant_id: str) -> int:
    async with sessions() as session:
        return await SearchQueueRepository(session, tenant_id).remaining()


async def _synced(engine: SyncEngine, target: SyncTarget, dovecot: DovecotServer) -> None:
    """The target's account mirrored with 25 messages in INBOX and 5 in Sent."""
    for mailbox, count in (("INBOX", 25), ("Sent", 5)):
        messages = [make_message(i)[1] for i in range(count)]
        await asyncio.to_thread(imap_client.append, dovecot, target.user, mailbox, messages)
    await engine.sync_account(target.tenant_id, target.account_id)


@pytest.mark.parametrize("backend", BACKENDS)
async def test_reindex_of_a_tenant_indexes_every_stored_message_once(
    settings: Settings,
    sessions: async_sessionmaker[AsyncSession],
    engine: SyncEngine,
    target: SyncTarget,
    dovecot: DovecotServer,
    tmp_path: Path,
    backend: str,
) -> None:
    await _synced(engine, target, dovecot)
    stored = await _stored(sessions, target.tenant_id)
    assert len(stored) == 30
    assert await _queued(sessions, target.tenant_id) == 30  # the api indexes nothing

    env = _env(settings, tmp_path, SEARCH_BACKEND=backend)
    result = await run_mailsvc("search", "reindex", "--tenant", target.tenant_id, env=env)

    assert result.returncode == 0, result.stderr
    state, indexed = await _index_of(
        settings, sessions, backend=backend, data_dir=tmp_path, tenant_id=target.tenant_id
    )
    assert state is IndexState.READY
    assert sorted(indexed) == stored
    assert await _queued(sessions, target.tenant_id) == 0
    # The progress line (rewritten with \r) ends complete; then the summary.
    assert f"\rtenant {target.tenant_id}: 30/30 100.0% " in result.stderr
    assert "messages/s" in result.stderr
    # stdout is the summary alone (logs go to stderr).
    summary, total = result.stdout.splitlines()
    assert summary.startswith(f"tenant {target.tenant_id}: 30 of 30 queued messages indexed here")
    assert summary.endswith("; index ready")
    assert total == f"reindexed 1 tenant ({backend})"


async def test_reindex_of_an_account_keeps_the_index_and_doubles_nothing(
    settings: Settings,
    sessions: async_sessionmaker[AsyncSession],
    engine: SyncEngine,
    target: SyncTarget,
    dovecot: DovecotServer,
    tmp_path: Path,
) -> None:
    await _synced(engine, target, dovecot)
    stored = await _stored(sessions, target.tenant_id)
    env = _env(settings, tmp_path, SEARCH_BACKEND="tantivy")
    command = ("search", "reindex", "--tenant", target.tenant_id, "--account")

    for _ in range(2):  # the second run indexes every message of the account again
        result = await run_mailsvc(*command, str(target.account_id), env=env)
        assert result.returncode == 0, result.stderr
        assert f"account {target.account_id}: 30 of 30 queued messages" in result.stdout
        state, indexed = await _index_of(
            settings, sessions, backend="tantivy", data_dir=tmp_path, tenant_id=target.tenant_id
        )
        assert state is IndexState.READY
        assert sorted(indexed) == stored


async def test_reindex_refuses_an_account_it_cannot_place(
    settings: Settings, target: SyncTarget, tmp_path: Path
) -> None:
    env = _env(settings, tmp_path)
    alone = await run_mailsvc("search", "reindex", "--account", str(target.account_id), env=env)
    assert alone.returncode == 2
    assert "--account needs --tenant" in alone.stderr

    # The account exists, but in another tenant than the one named.
    elsewhere = await run_mailsvc(
        "search", "reindex", "--tenant", "t-other", "--account", str(target.account_id), env=env
    )
    assert elsewhere.returncode == 2
    assert f"no account {target.account_id} in tenant t-other" in elsewhere.stderr


async def test_reindex_without_options_covers_every_tenant_with_messages(
    settings: Settings, isolated_database: str, isolated_redis: str, tmp_path: Path
) -> None:
    engine = create_engine(isolated_database, pool_size=2)
    sessions = create_sessionmaker(engine)
    try:
        first = await new_tenant(sessions, synced=True)
        second = await new_tenant(sessions, synced=True)
        await new_tenant(sessions, synced=True)  # an account without messages: not listed
        await store(sessions, first, 7)
        await store(sessions, second, 4, mailbox="Archive")
        env = _env(
            settings,
            tmp_path,
            DATABASE_URL=isolated_database,
            REDIS_URL=isolated_redis,
            SEARCH_BACKEND="tantivy",
        )

        result = await run_mailsvc("search", "reindex", env=env)

        assert result.returncode == 0, result.stderr
        lines = result.stdout.splitlines()
        assert lines[-1] == "reindexed 2 tenants (tantivy)"
        for tenant in (first, second):
            assert any(line.startswith(f"tenant {tenant.id}: ") for line in lines)
            state, indexed = await _index_of(
                settings, sessions, backend="tantivy", data_dir=tmp_path, tenant_id=tenant.id
            )
            assert state is IndexState.READY
            assert sorted(indexed) == await _stored(sessions, tenant.id)
    finally:
        await engine.dispose()


async def test_reindex_waits_for_the_worker_holding_the_lease_and_says_so(
    settings: Settings,
    sessions: async_sessionmaker[AsyncSession],
    engine: SyncEngine,
    target: SyncTarget,
    dovecot: DovecotServer,
    tmp_path: Path,
) -> None:
    await _synced(engine, target, dovecot)
    redis = create_redis(settings.required_redis_url)
    lease = search_lease_key(target.tenant_id)
    # As a worker indexing the tenant holds it (renewed while it works).
    await redis.set(lease, "worker-elsewhere", px=120_000)
    env = _env(settings, tmp_path, SEARCH_BACKEND="tantivy")
    process = await asyncio.create_subprocess_exec(
        MAILSVC,
        "search",
        "reindex",
        "--tenant",
        target.tenant_id,
        env={"PATH": os.environ.get("PATH", ""), "HOME": os.environ.get("HOME", "/"), **env},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert process.stderr is not None
        told = await asyncio.wait_for(process.stderr.readline(), 60)
        assert b"waiting for worker-elsewhere" in told, told
        # Waiting, not working: nothing is reset, queued anew or taken from the queue.
        await asyncio.sleep(0.5)
        assert process.returncode is None
        assert await _queued(sessions, target.tenant_id) == 30
        await redis.delete(lease)  # the worker is done
        stdout, _ = await asyncio.wait_for(process.communicate(), 60)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
        await redis.aclose()

    assert process.returncode == 0
    assert f"tenant {target.tenant_id}: 30 of 30" in stdout.decode()
    _, indexed = await _index_of(
        settings, sessions, backend="tantivy", data_dir=tmp_path, tenant_id=target.tenant_id
    )
    assert sorted(indexed) == await _stored(sessions, target.tenant_id)


async def test_two_processes_indexing_one_tenant_at_once_lose_and_double_nothing(
    settings: Settings,
    sessions: async_sessionmaker[AsyncSession],
    engine: SyncEngine,
    target: SyncTarget,
    dovecot: DovecotServer,
    tmp_path: Path,
) -> None:
    """Two processes write the same tenant's Tantivy index at once: the Redis lease
    and Tantivy's own lock file let one write at a time, and no lock error surfaces."""
    await _synced(engine, target, dovecot)
    env = _env(settings, tmp_path, SEARCH_BACKEND="tantivy")
    first = await run_mailsvc("search", "reindex", "--tenant", target.tenant_id, env=env)
    assert first.returncode == 0, first.stderr

    command = ("search", "reindex", "--tenant", target.tenant_id)
    account = ("--account", str(target.account_id))
    both = await asyncio.gather(*(run_mailsvc(*command, *account, env=env) for _ in range(2)))

    for result in both:
        assert result.returncode == 0, result.stderr
        assert "Traceback" not in result.stderr
    state, indexed = await _index_of(
        settings, sessions, backend="tantivy", data_dir=tmp_path, tenant_id=target.tenant_id
    )
    assert state is IndexState.READY
    assert sorted(indexed) == await _stored(sessions, target.tenant_id)
    assert await _queued(sessions, target.tenant_id) == 0
