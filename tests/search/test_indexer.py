"""The search indexer against both backends, real PostgreSQL and Redis: what it drains
is what PostgreSQL holds, once; two indexers on one tenant neither fail nor double;
a missing index is rebuilt; a stalled writer cannot write an old state over a new
one; `account.indexed` is sent once."""

from __future__ import annotations

import asyncio
import shutil
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from arq.connections import ArqRedis
from arq.constants import default_queue_name, job_key_prefix
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from mailsvc.event.listener import ChangeListener, listen_dsn
from mailsvc.kit.redis import create_redis
from mailsvc.kit.repository import TenantScope
from mailsvc.kit.tasks import cancel_and_wait
from mailsvc.models import Change, Mailbox, SearchIndexStateRow
from mailsvc.search.backend import IndexState, SearchBackend, SearchDocument, SearchRebuilding
from mailsvc.search.filter import MessageFilter
from mailsvc.search.indexed import ACCOUNT_INDEXED, announce_if_indexed
from mailsvc.search.indexer import SearchIndexer, search_lease_key
from mailsvc.search.postgres import PostgresBackend
from mailsvc.search.queue_repository import SEARCH_CHANNEL
from mailsvc.search.rebuild import (
    REBUILD_JOB,
    rebuild_job_id,
    rebuild_search_index,
    request_rebuild,
)
from mailsvc.search.tantivy import TantivyBackend
from tests.fixtures.waiting import eventually
from tests.search.backend_conformance import all_hits
from tests.search.stored import (
    PROBE,
    StoredTenant,
    clear_queue,
    delete_messages,
    new_tenant,
    queued,
    store,
    stored_ids,
    update_messages,
)

Sessions = async_sessionmaker[AsyncSession]


class Backends:
    """Opens backends of one kind as separate processes would: Tantivy ones on one
    index directory, each with its own readers and writers."""

    def __init__(self, kind: str, sessionmaker: Sessions, root: Path) -> None:
        self.kind = kind
        self.root = root
        self.rebuilds_requested: list[str] = []
        self._sessionmaker = sessionmaker
        self._opened: list[SearchBackend] = []

    def open(self) -> SearchBackend:
        backend: SearchBackend
        if self.kind == "postgres":
            backend = PostgresBackend(self._sessionmaker)
        else:
            backend = TantivyBackend(self.root, request_rebuild=self._request_rebuild)
        self._opened.append(backend)
        return backend

    async def break_index(self, tenant_id: str) -> None:
        """Make the tenant's index unusable the way each backend can lose it."""
        if self.kind == "postgres":
            # Written in an older format: the postgres backend's MISSING.
            async with self._sessionmaker.begin() as session:
                await session.execute(
                    TenantScope(session, tenant_id).insert(
                        SearchIndexStateRow, {"state": "ready", "schema_version": 0}
                    )
                )
        else:
            shutil.rmtree(self.root)  # the tests' root holds this tenant's index only

    async def _request_rebuild(self, tenant_id: str) -> None:
        self.rebuilds_requested.append(tenant_id)

    async def aclose(self) -> None:
        for backend in self._opened:
            await backend.aclose()


@pytest.fixture(params=["postgres", "tantivy"])
async def backends(
    request: pytest.FixtureRequest, sessionmaker: Sessions, tmp_path: Path
) -> AsyncIterator[Backends]:
    opened = Backends(str(request.param), sessionmaker, tmp_path / "search")
    yield opened
    await opened.aclose()


def make_indexer(
    sessionmaker: Sessions,
    redis: aioredis.Redis,
    backend: SearchBackend,
    *,
    owner_id: str = "indexer",
    batch: int = 7,
    lease_ttl_seconds: float = 30.0,
    listener: ChangeListener | None = None,
) -> SearchIndexer:
    return SearchIndexer(
        sessionmaker=sessionmaker,
        redis=redis,
        backend=backend,
        listener=listener or ChangeListener("postgresql://not-started", channel=SEARCH_CHANNEL),
        owner_id=owner_id,
        batch=batch,
        lease_ttl_seconds=lease_ttl_seconds,
    )


async def found(backend: SearchBackend, tenant: StoredTenant, **filters: Any) -> list[uuid.UUID]:
    """Every message a search of the probe word finds, paging to the end (a message
    found twice fails the test)."""
    hits = await all_hits(
        backend, tenant.id, MessageFilter(text=PROBE, **filters), order="newest", page_size=25
    )
    return [hit.message_id for hit in hits]


async def assert_index_matches_postgres(
    sessionmaker: Sessions, backend: SearchBackend, tenant: StoredTenant
) -> None:
    ids = await found(backend, tenant)
    assert len(ids) == len(set(ids)), "a document is in the index twice"
    assert set(ids) == await stored_ids(sessionmaker, tenant)


async def test_a_drained_tenant_has_every_stored_message_once(
    sessionmaker: Sessions, redis: aioredis.Redis, backends: Backends
) -> None:
    backend = backends.open()
    tenant = await new_tenant(sessionmaker)
    inbox = await store(sessionmaker, tenant, 20)
    archive = await store(sessionmaker, tenant, 6, mailbox="Archive")
    await update_messages(sessionmaker, tenant, inbox[:4], flags=["\\Seen"])
    for uid, message_id in enumerate(inbox[4:6], start=500):
        await update_messages(
            sessionmaker, tenant, [message_id], mailbox_id=tenant.mailbox_ids["Archive"], uid=uid
        )
    await delete_messages(sessionmaker, tenant, archive[:2])
    rows = len(await queued(sessionmaker, tenant))
    progress: list[tuple[int, int]] = []

    indexer = make_indexer(sessionmaker, redis, backend)
    done = await indexer.drain(tenant.id, progress=lambda d, r: progress.append((d, r)))

    assert done == rows
    assert progress[-1] == (rows, 0)
    assert [d for d, _ in progress] == sorted(d for d, _ in progress)
    assert await queued(sessionmaker, tenant) == []
    await assert_index_matches_postgres(sessionmaker, backend, tenant)
    assert set(await found(backend, tenant, unread=True)) == set(inbox[4:] + archive[2:])
    in_archive = await found(backend, tenant, mailbox_ids=(tenant.mailbox_ids["Archive"],))
    assert set(in_archive) == set(inbox[4:6] + archive[2:])

    # Changes after the drain reach the index with the next one.
    await delete_messages(sessionmaker, tenant, inbox[6:8])
    await update_messages(sessionmaker, tenant, inbox[:4], flags=[])
    assert await indexer.drain(tenant.id) == 6
    await assert_index_matches_postgres(sessionmaker, backend, tenant)
    assert set(inbox[:4]) <= set(await found(backend, tenant, unread=True))


async def test_two_indexers_draining_one_tenant_neither_fail_nor_double(
    sessionmaker: Sessions, redis_url: str, backends: Backends
) -> None:
    tenant = await new_tenant(sessionmaker)
    await store(sessionmaker, tenant, 40)
    await store(sessionmaker, tenant, 15, mailbox="Archive")
    rows = len(await queued(sessionmaker, tenant))
    clients = [create_redis(redis_url), create_redis(redis_url)]
    try:
        # As two worker processes: their own Redis connections, backends and owner ids.
        first, second = (
            make_indexer(sessionmaker, client, backends.open(), owner_id=f"worker-{n}", batch=4)
            for n, client in enumerate(clients)
        )
        done = await asyncio.gather(first.drain(tenant.id), second.drain(tenant.id))
    finally:
        for client in clients:
            await client.aclose()

    assert sum(done) == rows  # every queue row taken exactly once
    await assert_index_matches_postgres(sessionmaker, backends.open(), tenant)


async def test_the_background_task_follows_stores_changes_and_expunges(
    sessionmaker: Sessions, redis: aioredis.Redis, database_url: str, backends: Backends
) -> None:
    backend = backends.open()
    listener = ChangeListener(listen_dsn(database_url), channel=SEARCH_CHANNEL)
    listener.start()
    indexer = make_indexer(sessionmaker, redis, backend, listener=listener)
    tenant = await new_tenant(sessionmaker)
    try:
        await asyncio.wait_for(listener.connected.wait(), 10)
        indexer.start()
        ids = await store(sessionmaker, tenant, 12)

        async def searchable() -> bool:
            try:
                return set(await found(backend, tenant)) == set(ids)
            except SearchRebuilding:
                return False  # a new Tantivy tenant is built first

        await eventually(searchable, what="stored messages searchable")
        await update_messages(sessionmaker, tenant, ids[:3], flags=["\\Seen"])
        await delete_messages(sessionmaker, tenant, ids[3:5])

        async def followed() -> bool:
            return set(await found(backend, tenant, unread=True)) == set(ids[5:])

        await eventually(followed, what="flag change and expunge searchable")
    finally:
        await indexer.stop()
        await listener.stop()
    await assert_index_matches_postgres(sessionmaker, backend, tenant)


async def test_a_missing_index_is_rebuilt_from_postgres(
    sessionmaker: Sessions, redis: aioredis.Redis, backends: Backends
) -> None:
    backend = backends.open()
    tenant = await new_tenant(sessionmaker)
    await store(sessionmaker, tenant, 15)
    indexer = make_indexer(sessionmaker, redis, backend)
    await indexer.drain(tenant.id)
    await assert_index_matches_postgres(sessionmaker, backend, tenant)

    await backends.break_index(tenant.id)
    assert await backend.state(tenant.id) is IndexState.MISSING
    with pytest.raises(SearchRebuilding):
        await found(backend, tenant)
    # Nothing is queued: the rebuild queues every message of the tenant itself.
    assert await queued(sessionmaker, tenant) == []
    assert await indexer.drain(tenant.id) == 15
    assert await backend.state(tenant.id) is IndexState.READY
    await assert_index_matches_postgres(sessionmaker, backend, tenant)


async def test_a_requested_rebuild_answers_503_until_drained(
    sessionmaker: Sessions, redis: aioredis.Redis, backends: Backends
) -> None:
    backend = backends.open()
    tenant = await new_tenant(sessionmaker)
    ids = await store(sessionmaker, tenant, 9)
    indexer = make_indexer(sessionmaker, redis, backend)
    await indexer.drain(tenant.id)

    assert await indexer.rebuild(tenant.id) == 9
    assert await backend.state(tenant.id) is IndexState.BUILDING
    with pytest.raises(SearchRebuilding):
        await found(backend, tenant)
    await indexer.drain(tenant.id)
    assert await backend.state(tenant.id) is IndexState.READY
    await assert_index_matches_postgres(sessionmaker, backend, tenant)

    # One account's rebuild queues its messages again; the index keeps answering.
    assert await indexer.rebuild(tenant.id, account_id=tenant.account_id) == 9
    assert await backend.state(tenant.id) is IndexState.READY
    assert set(await found(backend, tenant)) == set(ids)
    assert await indexer.drain(tenant.id) == 9
    await assert_index_matches_postgres(sessionmaker, backend, tenant)


class StallingBackend:
    """A backend whose first `write` waits until released: a worker that stalls in the
    middle of a batch. Counts what reaches the backend it wraps."""

    def __init__(self, inner: SearchBackend, *, stall: bool) -> None:
        self.name = inner.name
        self.inner = inner
        self.stall = stall
        self.stalled = asyncio.Event()
        self.resume = asyncio.Event()
        self.states = 0
        self.writes = 0

    async def search(self, tenant_id: str, filters: MessageFilter, **options: Any) -> Any:
        return await self.inner.search(tenant_id, filters, **options)

    async def state(self, tenant_id: str) -> IndexState:
        self.states += 1
        return await self.inner.state(tenant_id)

    async def reset(self, session: AsyncSession, tenant_id: str) -> None:
        await self.inner.reset(session, tenant_id)

    async def write(
        self,
        session: AsyncSession,
        tenant_id: str,
        *,
        documents: Sequence[SearchDocument],
        removed: Sequence[uuid.UUID],
    ) -> None:
        if self.stall and self.writes == 0:
            self.stalled.set()
            await self.resume.wait()
        self.writes += 1
        await self.inner.write(session, tenant_id, documents=documents, removed=removed)

    async def mark_ready(self, session: AsyncSession, tenant_id: str) -> None:
        await self.inner.mark_ready(session, tenant_id)

    async def aclose(self) -> None:
        await self.inner.aclose()


async def test_a_writer_that_lost_its_lease_mid_batch_cannot_write_over_newer_documents(
    sessionmaker: Sessions, redis_url: str, backends: Backends
) -> None:
    tenant = await new_tenant(sessionmaker)
    ids = await store(sessionmaker, tenant, 20)
    # Build the index first, so neither writer below starts with a rebuild.
    setup = create_redis(redis_url)
    await make_indexer(sessionmaker, setup, backends.open()).drain(tenant.id)
    await update_messages(sessionmaker, tenant, ids, flags=["\\Flagged"])
    stalling = StallingBackend(backends.open(), stall=True)
    watching = StallingBackend(backends.open(), stall=False)
    clients = [create_redis(redis_url), create_redis(redis_url)]
    stalled = make_indexer(sessionmaker, clients[0], stalling, owner_id="stalled", batch=5)
    takeover = make_indexer(sessionmaker, clients[1], watching, owner_id="takeover", batch=5)
    first = asyncio.create_task(stalled.drain(tenant.id))
    second: asyncio.Task[int] | None = None
    try:
        await asyncio.wait_for(stalling.stalled.wait(), 10)
        # It has read ids[0:5] as unread and stalls past its lease, which expires...
        await setup.delete(search_lease_key(tenant.id))
        # ... while those messages are read on the server: newer documents are due.
        await update_messages(sessionmaker, tenant, ids[:5], flags=["\\Flagged", "\\Seen"])
        second = asyncio.create_task(takeover.drain(tenant.id))

        async def tried_twice() -> bool:
            assert second is not None
            return watching.states >= 2 or second.done()

        # The new lease holder got to its batch twice and wrote nothing: the tenant's
        # batch is still the stalled writer's.
        await eventually(tried_twice, what="the takeover's attempts")
        assert watching.writes == 0, "written while the stalled writer's batch was open"
        stalling.resume.set()
        await asyncio.wait_for(asyncio.gather(first, second), 60)
    finally:
        await cancel_and_wait([task for task in (first, second) if task is not None])
        for client in [setup, *clients]:
            await client.aclose()

    reader = backends.open()
    await assert_index_matches_postgres(sessionmaker, reader, tenant)
    assert set(await found(reader, tenant, unread=True)) == set(ids[5:])
    assert set(await found(reader, tenant, flagged=True)) == set(ids)


async def indexed_events(sessionmaker: Sessions, tenant: StoredTenant) -> list[dict[str, Any]]:
    async with sessionmaker() as session:
        return list(
            await session.scalars(
                TenantScope(session, tenant.id)
                .select(Change.payload)
                .where(Change.type == ACCOUNT_INDEXED)
            )
        )


async def mark_synced(sessionmaker: Sessions, tenant: StoredTenant) -> None:
    """What the sync records when a mailbox's pass completes."""
    async with sessionmaker.begin() as session:
        await session.execute(
            TenantScope(session, tenant.id)
            .update(Mailbox)
            .values(sync_state="synced", last_synced_at=datetime.now(UTC))
        )


async def announce(sessionmaker: Sessions, tenant: StoredTenant) -> bool:
    async with sessionmaker.begin() as session:
        return await announce_if_indexed(session, tenant.id, tenant.account_id)


async def test_account_indexed_is_sent_once_when_the_first_mirror_is_searchable(
    sessionmaker: Sessions, redis: aioredis.Redis, backends: Backends
) -> None:
    indexer = make_indexer(sessionmaker, redis, backends.open())
    tenant = await new_tenant(sessionmaker)
    await store(sessionmaker, tenant, 10)
    await indexer.drain(tenant.id)
    # All indexed, but the first mirror has not finished: another mailbox is pending.
    assert await indexed_events(sessionmaker, tenant) == []
    assert not await announce(sessionmaker, tenant)

    await store(sessionmaker, tenant, 3, mailbox="Archive")
    await mark_synced(sessionmaker, tenant)
    # The sync's pass ends with messages still queued: not yet.
    assert not await announce(sessionmaker, tenant)
    await indexer.drain(tenant.id)  # its batch completes the account
    assert await indexed_events(sessionmaker, tenant) == [
        {"account_id": str(tenant.account_id), "messages_indexed": 13}
    ]

    # Later passes and batches ask again and send nothing.
    await store(sessionmaker, tenant, 2)
    await indexer.drain(tenant.id)
    assert not await announce(sessionmaker, tenant)
    assert len(await indexed_events(sessionmaker, tenant)) == 1


async def test_account_indexed_goes_out_once_when_both_sides_finish_together(
    sessionmaker: Sessions,
) -> None:
    tenant = await new_tenant(sessionmaker, synced=True)
    await store(sessionmaker, tenant, 4)
    await clear_queue(sessionmaker, tenant)  # as if the indexer had just drained it

    calls: list[Callable[[], Awaitable[bool]]] = [
        lambda: announce(sessionmaker, tenant) for _ in range(4)
    ]
    results = await asyncio.gather(*(call() for call in calls))
    assert sorted(results) == [False, False, False, True]
    assert await indexed_events(sessionmaker, tenant) == [
        {"account_id": str(tenant.account_id), "messages_indexed": 4}
    ]


async def test_a_rebuild_is_queued_once_per_tenant_and_its_job_rebuilds(
    sessionmaker: Sessions, redis: aioredis.Redis, backends: Backends
) -> None:
    backend = backends.open()
    tenant = await new_tenant(sessionmaker)
    await store(sessionmaker, tenant, 6)
    indexer = make_indexer(sessionmaker, redis, backend)
    await indexer.drain(tenant.id)
    await backends.break_index(tenant.id)

    arq = ArqRedis(connection_pool=redis.connection_pool)
    job_id = rebuild_job_id(tenant.id)
    try:
        await request_rebuild(arq, tenant.id)
        await request_rebuild(arq, tenant.id)  # a second search while it is queued
        queued_jobs = [job for job in await arq.queued_jobs() if job.job_id == job_id]
        assert [(job.function, job.args) for job in queued_jobs] == [(REBUILD_JOB, (tenant.id,))]
    finally:
        # No worker of this run may pick it up later.
        await redis.zrem(default_queue_name, job_id)
        await redis.delete(job_key_prefix + job_id)

    assert await rebuild_search_index({"search_indexer": indexer}, tenant.id) == 6
    assert await backend.state(tenant.id) is IndexState.READY
    await assert_index_matches_postgres(sessionmaker, backend, tenant)
