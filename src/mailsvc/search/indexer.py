"""The search indexer: drains each tenant's `search_queue` into its search index.

Runs as a long-lived task in every worker process, woken by `NOTIFY mailsvc_search
'<tenant>'` (the queue triggers send it when a message is stored, changed or
deleted, delivered at commit) and, as a safety net, every `POLL_SECONDS` for every
tenant with queued rows.

Per tenant with work, one **turn**:

1. take the tenant's writer lease in Redis (`mailsvc:lease:search:<tenant>`, renewed
   while the turn runs). Another process holding it: skip the tenant and come back
   shortly. So one process writes a tenant's index at a time, and a Tantivy lock
   error is not something a user ever sees;
2. ask the backend for the index's state: `MISSING` (never built, deleted, corrupt,
   of an older schema) is rebuilt first: every message of the tenant is queued, the
   index emptied and marked `BUILDING` (`rebuild`);
3. batches, each one transaction: take the oldest `BATCH` queue rows, read those
   messages as they are now (a message without a row was deleted: `removed`), hand
   them to `backend.write`, delete exactly the rows taken, and when the queue is then
   empty and the index `BUILDING`, mark it ready. A row that arrives meanwhile stays
   for the next batch, so a message's last change is always indexed after it;
4. after each batch, `account.indexed` for the batch's accounts when it is due
   (`search.indexed`);
5. release the lease, then look once more for rows: one queued while the lease was
   held may have been announced to a process that skipped the tenant.

A turn ends when the queue is empty, or after `TURN_SECONDS` (the tenant goes on in
the next pass, so one tenant's first mirror does not hold up another tenant's fresh
mail); up to `CONCURRENT_TENANTS` tenants are worked on at once.

**Invariants.** No document is lost: queue rows leave only in the transaction that
wrote their documents (or after it, for a backend that commits its own index
first); a crash repeats the batch, and documents are replaced by id, so none is
doubled. No stale document wins: every batch holds the tenant's advisory lock
(`SearchQueueRepository.lock_writer`), so even a process that stalled past its lease
cannot write an older state of a message over a newer one. A backend or database
error is logged and the turn retried with a growing delay; its rows stay queued.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncGenerator, Callable, Iterable
from dataclasses import dataclass, field
from typing import Literal

import redis.asyncio as aioredis
import structlog
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from mailsvc.event.listener import ALL_TENANTS, ChangeListener
from mailsvc.kit.lease import HeldLease, Leases, hold
from mailsvc.kit.tasks import cancel_and_wait
from mailsvc.search.backend import IndexState, SearchBackend
from mailsvc.search.indexed import announce_if_indexed
from mailsvc.search.queue_repository import SearchQueueRepository, tenants_with_queued_messages

log = structlog.get_logger("mailsvc.search")

LEASE_KEY_PREFIX = "mailsvc:lease:search:"
LEASE_TTL_SECONDS = 30.0
BATCH = 500
# Every tenant with queued rows is looked at this often even without a notification.
POLL_SECONDS = 5.0
TURN_SECONDS = 1.0
CONCURRENT_TENANTS = 4
# Another process holds the tenant's lease: look again after this.
_BUSY_RETRY_SECONDS = 0.5
# After a failed turn, wait this long, doubling up to the cap.
_FAILURE_RETRY_SECONDS = 0.5
_FAILURE_RETRY_MAX_SECONDS = 30.0
# `drain` gives up after this many failed batches in a row.
_DRAIN_MAX_FAILURES = 8

Outcome = Literal["done", "more", "busy"]
Progress = Callable[[int, int], None]
"""`progress(done, remaining)`: queue rows indexed so far, and still queued."""


def search_lease_key(tenant_id: str) -> str:
    """The Redis key of the tenant's index writer lease."""
    return f"{LEASE_KEY_PREFIX}{tenant_id}"


class _Busy(Exception):
    """Another transaction holds the tenant's writer lock: try again shortly."""


@dataclass(frozen=True, slots=True)
class _Batch:
    taken: int
    """Queue rows taken (and deleted)."""
    accounts: set[uuid.UUID]
    ready: bool
    """The batch marked a `BUILDING` index ready."""


@dataclass(slots=True)
class _Schedule:
    """When each tenant the task knows of may be worked on next, and why it waits."""

    due: set[str] = field(default_factory=set)
    not_before: dict[str, float] = field(default_factory=dict)
    failures: dict[str, int] = field(default_factory=dict)

    def runnable(self, now: float) -> set[str]:
        return {t for t in self.due if self.not_before.get(t, 0.0) <= now}

    def record(self, tenant_id: str, outcome: Outcome | None, now: float) -> None:
        """`None`: the turn failed."""
        if outcome == "done":
            self.due.discard(tenant_id)
            self.not_before.pop(tenant_id, None)
            self.failures.pop(tenant_id, None)
            return
        self.due.add(tenant_id)
        if outcome == "more":
            self.not_before.pop(tenant_id, None)
            self.failures.pop(tenant_id, None)
        elif outcome == "busy":
            self.not_before[tenant_id] = now + _BUSY_RETRY_SECONDS
        else:
            failures = self.failures[tenant_id] = self.failures.get(tenant_id, 0) + 1
            delay = min(_FAILURE_RETRY_SECONDS * 2 ** (failures - 1), _FAILURE_RETRY_MAX_SECONDS)
            self.not_before[tenant_id] = now + delay

    def next_wait(self, now: float, *, cap: float) -> float:
        """Seconds until a known tenant may run again (at most `cap`)."""
        waits = [max(0.0, self.not_before.get(t, 0.0) - now) for t in self.due]
        return min([cap, *waits])


class SearchIndexer:
    """The search indexer of one worker process (see the module docstring)."""

    def __init__(
        self,
        *,
        sessionmaker: async_sessionmaker[AsyncSession],
        redis: aioredis.Redis,
        backend: SearchBackend,
        listener: ChangeListener,
        owner_id: str,
        lease_ttl_seconds: float = LEASE_TTL_SECONDS,
        batch: int = BATCH,
    ) -> None:
        self._sessionmaker = sessionmaker
        self._backend = backend
        self._listener = listener
        self._leases = Leases(redis, owner_id=owner_id, ttl_seconds=lease_ttl_seconds)
        self._batch = batch
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Run the indexer as a task of the running event loop (the listener, on the
        search channel, must run)."""
        self._task = asyncio.create_task(self._run(), name="search-indexer")

    async def stop(self) -> None:
        """Stop the task; a batch cut short is rolled back and taken again later."""
        if self._task is not None:
            await cancel_and_wait([self._task])

    async def index_tenant(self, tenant_id: str, *, budget_seconds: float | None = None) -> Outcome:
        """One turn on the tenant: `done` when its queue was found empty, `more` when
        rows are left (the budget ran out, or rows arrived meanwhile), `busy` when
        another process holds its lease. Raises what a batch raised."""
        async with hold(self._leases, search_lease_key(tenant_id)) as held:
            if held is None:
                return "busy"
            try:
                outcome = await self._turn(tenant_id, held, budget_seconds=budget_seconds)
            except _Busy:
                # A process that outlived its lease is finishing a batch.
                return "busy"
        if outcome == "done" and await self._has_pending(tenant_id):
            return "more"
        return outcome

    async def drain(self, tenant_id: str, *, progress: Progress | None = None) -> int:
        """Index the tenant until its queue is empty, in this process, rebuilding a
        missing index first; the number of queue rows indexed here.

        Waits for the lease while another process holds it (that one may empty the
        queue meanwhile). A failed batch is retried after a pause; `drain` raises
        after several in a row.
        """
        done = 0
        failures = 0
        wait = _BUSY_RETRY_SECONDS / 10
        while True:
            blocked = True
            async with hold(self._leases, search_lease_key(tenant_id)) as held:
                if held is not None:
                    try:
                        async with contextlib.aclosing(self._batches(tenant_id, held)) as batches:
                            async for batch in batches:
                                done += batch.taken
                                failures = 0
                                if progress is not None:
                                    progress(done, await self._remaining(tenant_id))
                        blocked = held.lost.is_set()
                    except _Busy:
                        pass  # a process that outlived its lease is finishing a batch
                    except Exception:
                        failures += 1
                        if failures >= _DRAIN_MAX_FAILURES:
                            raise
                        log.exception("search.drain_failed", tenant_id=tenant_id)
            if not await self._has_pending(tenant_id):
                if progress is not None:
                    progress(done, 0)
                return done
            if failures:
                await asyncio.sleep(_FAILURE_RETRY_SECONDS * failures)
            elif blocked:
                await asyncio.sleep(wait)
                wait = min(wait * 2, _BUSY_RETRY_SECONDS)
            else:
                wait = _BUSY_RETRY_SECONDS / 10

    async def rebuild(self, tenant_id: str, *, account_id: uuid.UUID | None = None) -> int:
        """Rebuild from PostgreSQL; how many messages were queued.

        The tenant's: under its lease (waiting for it), the index is emptied and
        marked `BUILDING` and every message queued; searches answer 503 until the
        queue is drained (by the worker's indexer, or `drain`). One account's:
        its messages are queued again, and the index stays searchable meanwhile.
        """
        if account_id is not None:
            async with self._sessionmaker.begin() as session:
                return await SearchQueueRepository(session, tenant_id).queue_all(
                    account_id=account_id
                )
        wait = _BUSY_RETRY_SECONDS / 10
        while True:
            async with hold(self._leases, search_lease_key(tenant_id)) as held:
                if held is not None:
                    with contextlib.suppress(_Busy):
                        return await self._reset(tenant_id)
            await asyncio.sleep(wait)
            wait = min(wait * 2, _BUSY_RETRY_SECONDS)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        schedule = _Schedule()
        async with self._listener.subscribe(ALL_TENANTS) as wakeup:
            everyone = True
            polled_at = loop.time()
            while True:
                if everyone:
                    try:
                        schedule.due |= await self._tenants()
                        polled_at = loop.time()
                    except Exception:
                        log.exception("search.poll_failed")
                        await asyncio.sleep(_FAILURE_RETRY_MAX_SECONDS / 10)
                        continue
                await self._pass(schedule)
                now = loop.time()
                timeout = schedule.next_wait(now, cap=max(0.0, polled_at + POLL_SECONDS - now))
                schedule.due |= await wakeup.wait(timeout)
                everyone = wakeup.missed or loop.time() >= polled_at + POLL_SECONDS
                wakeup.missed = False

    async def _tenants(self) -> set[str]:
        async with self._sessionmaker() as session:
            return set(await tenants_with_queued_messages(session))

    async def _pass(self, schedule: _Schedule) -> None:
        """One turn for each tenant that may run now, a few at a time."""
        loop = asyncio.get_running_loop()
        limit = asyncio.Semaphore(CONCURRENT_TENANTS)

        async def turn(tenant_id: str) -> None:
            async with limit:
                outcome: Outcome | None
                try:
                    outcome = await self.index_tenant(tenant_id, budget_seconds=TURN_SECONDS)
                except Exception:
                    # A Tantivy lock held by a process outside the lease, the database
                    # away, a bug: the rows stay queued; retry later, never die.
                    log.exception("search.index_failed", tenant_id=tenant_id)
                    outcome = None
                schedule.record(tenant_id, outcome, loop.time())

        await asyncio.gather(*(turn(t) for t in sorted(schedule.runnable(loop.time()))))

    async def _turn(
        self, tenant_id: str, held: HeldLease, *, budget_seconds: float | None
    ) -> Outcome:
        loop = asyncio.get_running_loop()
        deadline = None if budget_seconds is None else loop.time() + budget_seconds
        async with contextlib.aclosing(self._batches(tenant_id, held)) as batches:
            async for _ in batches:
                if deadline is not None and loop.time() >= deadline:
                    return "more"
        return "busy" if held.lost.is_set() else "done"

    async def _batches(self, tenant_id: str, held: HeldLease) -> AsyncGenerator[_Batch, None]:
        """Batches until the queue is empty or the lease is lost (see the docstring)."""
        state = await self._backend.state(tenant_id)
        if state is IndexState.MISSING:
            state = await self._recreate(tenant_id)
        while not held.lost.is_set():
            batch = await self._write_batch(tenant_id, building=state is IndexState.BUILDING)
            if batch.ready:
                state = IndexState.READY
            if batch.taken == 0:
                return
            await self._announce(tenant_id, batch.accounts)
            yield batch

    async def _write_batch(self, tenant_id: str, *, building: bool) -> _Batch:
        """One transaction: the oldest queue rows into the index, and out of the queue."""
        async with self._sessionmaker.begin() as session:
            queue = SearchQueueRepository(session, tenant_id)
            if not await queue.lock_writer():
                raise _Busy
            taken = await queue.take(self._batch)
            # A message queued twice (stored, then flagged) is read and written once.
            message_ids = list(dict.fromkeys(entry.message_id for entry in taken))
            documents = await queue.documents(message_ids)
            removed = [message_id for message_id in message_ids if message_id not in documents]
            if message_ids:
                await self._backend.write(
                    session, tenant_id, documents=list(documents.values()), removed=removed
                )
                await queue.forget([entry.seq for entry in taken])
            ready = building and not await queue.has_pending()
            if ready:
                # In the batch's transaction: for the postgres backend the state moves
                # with the last documents; Tantivy records it before the commit, and a
                # failed commit only leaves rows whose documents are written already.
                await self._backend.mark_ready(session, tenant_id)
        if ready:
            log.info("search.index_ready", tenant_id=tenant_id)
        if taken:
            log.debug(
                "search.batch_indexed",
                tenant_id=tenant_id,
                documents=len(documents),
                removed=len(removed),
            )
        return _Batch(len(taken), {entry.account_id for entry in taken}, ready)

    async def _recreate(self, tenant_id: str) -> IndexState:
        """A new index for a tenant whose index is MISSING; its state.

        A tenant that was never fully searchable (its first mirror is being indexed)
        gets an index that answers at once and fills as the queue drains: a first
        mirror is searchable message by message. One whose index was complete once
        and is lost, corrupt or outdated is rebuilt BUILDING, answering 503 until it
        is complete again, rather than with results that silently miss messages.
        """
        async with self._sessionmaker() as session:
            lost = await SearchQueueRepository(session, tenant_id).was_searchable()
        if lost:
            log.warning("search.index_missing", tenant_id=tenant_id)
        await self._reset(tenant_id)
        if lost:
            return IndexState.BUILDING
        async with self._sessionmaker.begin() as session:
            await self._backend.mark_ready(session, tenant_id)
        log.info("search.index_created", tenant_id=tenant_id)
        return IndexState.READY

    async def _reset(self, tenant_id: str) -> int:
        """Empty the tenant's index, mark it `BUILDING`, and queue every message.

        The messages are queued in a transaction of their own first: a backend whose
        index lives outside PostgreSQL (Tantivy) empties it before the reset's
        transaction commits, and a crash there must still find every message queued.
        The reset's transaction then queues whatever a process that outlived its
        lease drained in between (usually nothing); for the postgres backend it holds
        the reset and the queueing together.
        """
        async with self._sessionmaker.begin() as session:
            queue = SearchQueueRepository(session, tenant_id)
            if not await queue.lock_writer():
                raise _Busy
            queued = await queue.queue_all()
        async with self._sessionmaker.begin() as session:
            queue = SearchQueueRepository(session, tenant_id)
            if not await queue.lock_writer():
                raise _Busy
            await self._backend.reset(session, tenant_id)
            queued += await queue.queue_all()
        log.info("search.rebuild_started", tenant_id=tenant_id, queued=queued)
        return queued

    async def _announce(self, tenant_id: str, accounts: Iterable[uuid.UUID]) -> None:
        for account_id in accounts:
            try:
                async with self._sessionmaker.begin() as session:
                    await announce_if_indexed(session, tenant_id, account_id)
            except Exception:
                # The next batch of the account, or the sync's next pass, asks again.
                log.exception("search.announce_failed", account_id=str(account_id))

    async def _has_pending(self, tenant_id: str) -> bool:
        async with self._sessionmaker() as session:
            return await SearchQueueRepository(session, tenant_id).has_pending()

    async def _remaining(self, tenant_id: str) -> int:
        async with self._sessionmaker() as session:
            return await SearchQueueRepository(session, tenant_id).remaining()
