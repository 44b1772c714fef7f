"""Child process of bench/sync.py: one `SyncEngine.sync_account` pass, timed and measured.

It builds what a sync worker builds (settings from the environment, database engine,
secret box, `ParserPool`, `SyncEngine`), starts the parser processes, then runs one
pass over the account that bench/sync.py created and writes a JSON report to
`--result`. With `--searchable` it also runs what a worker runs beside its sync jobs:
the search indexer (`SearchIndexer`, woken by the queue triggers' `NOTIFY` on its own
listener, writing to the backend `SEARCH_BACKEND` names), started before the clock.

- `seconds`: the `sync_account` call alone (connect, LIST, fetch, parse, store):
  every message is listable when it returns;
- `searchable_seconds` (with `--searchable`): from the same start until the
  tenant's `search_queue` is empty after the sync returned (polled every 20 ms):
  every message's document is then in the index, committed; `index_documents`,
  `index_state`: what the backend holds then (checked after the clock);
- `rss_baseline_mb`: this process' resident set right before that call;
- `peak_rss_mb`: its peak resident set (`VmHWM`, the kernel's high-water mark of
  this process' own memory);
- `worker_peak_rss_mb`: the largest `VmHWM` of one parser process, read just before
  the pool is shut down;
- `sampled_total_peak_mb`: the largest sum of this process' and all its children's
  resident sets, sampled every 50 ms (what the whole sync costs the machine);
- `sampled_peak_anon_mb` / `sampled_peak_file_mb`: the largest `RssAnon` (the
  process' own memory) and `RssFile` (mapped file pages: page cache, reclaimable;
  Tantivy's segments are memory-mapped) of this process, sampled the same way;
- `ru_maxrss_self_mb` / `ru_maxrss_children_mb`: `getrusage(RUSAGE_SELF)` and, after
  the pool's workers are reaped, `getrusage(RUSAGE_CHILDREN)`. Only for the record:
  Linux carries the parent's high-water mark into a process at exec (the parent's
  `signal->maxrss` survives `execve`, and `vfork`-based spawning shares the
  parent's memory until then), so these are at least the RSS of whoever started
  the process and overstate a small process started by a big one. `VmHWM` belongs
  to the new address space and has no such floor.

Settings come from the environment only (never from a `.env` file), so the bench
decides exactly what differs from the defaults. Imports of mailsvc happen inside
`main()`: the parser pool starts its workers with `spawn`, which re-imports this
module in every worker, and a worker should not carry the database stack.

Run by bench/sync.py; alone it only explains itself.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import sys
import threading
import time
from pathlib import Path
from typing import Any

SAMPLE_SECONDS = 0.05
QUEUE_POLL_SECONDS = 0.02
WARM_MESSAGE = b"Subject: warm-up\r\nMessage-ID: <warm@bench.invalid>\r\n\r\nwarm\r\n"


def _kib_of(status: str, field: str) -> int:
    for line in status.splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def current_rss_kib(pid: int | str = "self", field: str = "VmRSS") -> int:
    """Resident set (or, with `VmHWM`, its peak) of `pid` in KiB; 0 if it is gone."""
    try:
        return _kib_of(Path(f"/proc/{pid}/status").read_text(), field)
    except (OSError, ValueError):
        return 0


def _descendants(root: int) -> list[int]:
    """Pids of every live process below `root` (parser workers, resource tracker)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            parents[int(entry.name)] = int(stat.rpartition(")")[2].split()[1])
        except (OSError, ValueError, IndexError):
            continue
    found: list[int] = []
    frontier = [root]
    while frontier:
        parent = frontier.pop()
        children = [pid for pid, ppid in parents.items() if ppid == parent]
        found += children
        frontier += children
    return found


class TreeRssSampler:
    """Samples the resident set of this process plus all its descendants in a thread."""

    def __init__(self) -> None:
        self.peak_kib = 0
        # This process' own peaks of anonymous memory and of mapped file pages (RSS
        # counts both; the second is page cache, e.g. Tantivy's memory-mapped segments).
        self.peak_anon_kib = 0
        self.peak_file_kib = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def _run(self) -> None:
        me = os.getpid()
        children: list[int] = []
        for sample in range(sys.maxsize):
            if self._stop.is_set():
                break
            if sample % 20 == 0:  # the pool's workers stay; rescan /proc once a second
                children = _descendants(me)
            total = current_rss_kib() + sum(current_rss_kib(pid) for pid in children)
            self.peak_kib = max(self.peak_kib, total)
            self.peak_anon_kib = max(self.peak_anon_kib, current_rss_kib(field="RssAnon"))
            self.peak_file_kib = max(self.peak_file_kib, current_rss_kib(field="RssFile"))
            self._stop.wait(SAMPLE_SECONDS)

    def __enter__(self) -> TreeRssSampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


def _mb(kib: int) -> float:
    """KiB to MiB (every `*_mb` figure of the report is in MiB)."""
    return round(kib / 1024, 1)


async def run(args: argparse.Namespace) -> dict[str, Any]:
    import uuid

    from mailsvc.account.logins import AccountLogins
    from mailsvc.config import Settings
    from mailsvc.kit.crypto import SecretBox
    from mailsvc.kit.db import create_engine, create_sessionmaker
    from mailsvc.kit.redis import create_redis
    from mailsvc.logging import configure_logging
    from mailsvc.ops.capacity import DEFAULT_POOL_SIZE
    from mailsvc.sync.engine import SyncEngine
    from mailsvc.sync.parser import ParserPool

    settings = Settings(_env_file=None)
    configure_logging(settings.log_level)
    database = create_engine(
        settings.async_database_url, pool_size=settings.database_pool_size or DEFAULT_POOL_SIZE
    )
    sessionmaker = create_sessionmaker(database)
    parser = ParserPool(processes=settings.sync_parse_processes or None)
    processes = settings.sync_parse_processes or os.cpu_count() or 1
    indexing = Indexing(settings, sessionmaker, args.tenant) if args.searchable else None
    try:
        engine = SyncEngine(
            sessionmaker=sessionmaker,
            logins=AccountLogins(
                sessionmaker=sessionmaker,
                redis=create_redis(settings.required_redis_url),
                secrets=SecretBox(*settings.encryption_keys()),
                settings=settings,
            ),
            settings=settings,
            parser=parser,
        )
        # A worker's pool lives as long as the worker: start its processes before the
        # clock (one tiny message per process makes the executor spawn all of them).
        started = time.perf_counter()
        await parser.parse([WARM_MESSAGE] * processes)
        pool_start_seconds = time.perf_counter() - started

        if indexing is not None:
            await indexing.start()
        baseline_kib = current_rss_kib()
        searchable: dict[str, Any] = {}
        with TreeRssSampler() as sampler:
            started = time.perf_counter()
            report = await engine.sync_account(args.tenant, uuid.UUID(args.account))
            seconds = time.perf_counter() - started
            if indexing is not None:
                queued_at_listable = await indexing.queued()
                await indexing.until_empty()
                searchable = {
                    "searchable_seconds": round(time.perf_counter() - started, 3),
                    "queued_when_listable": queued_at_listable,
                }
        peak_self_kib = current_rss_kib(field="VmHWM")
        if indexing is not None:
            searchable |= await indexing.check()
        worker_peaks = [current_rss_kib(pid, "VmHWM") for pid in _descendants(os.getpid())]
        ru_self_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    finally:
        if indexing is not None:
            await indexing.stop()
        parser.close()  # waits for the workers, so RUSAGE_CHILDREN covers them
        await database.dispose()
    return {
        **searchable,
        "search_backend": settings.search_backend if indexing is not None else None,
        "seconds": round(seconds, 3),
        "new_messages": report.new_messages,
        "mailboxes": report.mailboxes,
        "updated": report.updated,
        "deleted": report.deleted,
        "parse_processes": processes,
        "pool_start_seconds": round(pool_start_seconds, 3),
        "rss_baseline_mb": _mb(baseline_kib),
        "peak_rss_mb": _mb(peak_self_kib),
        "rss_increase_mb": _mb(peak_self_kib - baseline_kib),
        "worker_peak_rss_mb": _mb(max(worker_peaks, default=0)),
        "worker_peaks_mb": [_mb(kib) for kib in worker_peaks],
        "sampled_total_peak_mb": _mb(sampler.peak_kib),
        "sampled_peak_anon_mb": _mb(sampler.peak_anon_kib),
        "sampled_peak_file_mb": _mb(sampler.peak_file_kib),
        "ru_maxrss_self_mb": _mb(ru_self_kib),
        "ru_maxrss_children_mb": _mb(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss),
        "settings": {
            "sync_batch_messages": settings.sync_batch_messages,
            "sync_batch_bytes": settings.sync_batch_bytes,
            "sync_max_message_bytes": settings.sync_max_message_bytes,
            "sync_parse_processes": settings.sync_parse_processes,
        },
    }


class Indexing:
    """The worker's search indexer, set up as `mailsvc.runtime` sets it up for a worker
    (its own listener on the queue's channel, a Redis lease per tenant)."""

    def __init__(self, settings: Any, sessionmaker: Any, tenant_id: str) -> None:
        from mailsvc.event.listener import ChangeListener, listen_dsn
        from mailsvc.kit.redis import create_redis
        from mailsvc.search.backends import open_search_backend
        from mailsvc.search.indexer import SearchIndexer
        from mailsvc.search.queue_repository import SEARCH_CHANNEL

        async def no_rebuild(tenant: str) -> None:
            # Only the api side asks (a reader finding an index missing); the indexer
            # rebuilds a missing index itself.
            raise RuntimeError(f"rebuild of {tenant} requested during the bench")

        self._tenant_id = tenant_id
        self._index_root = settings.search_index_path
        self._sessionmaker = sessionmaker
        self._redis = create_redis(settings.redis_url)
        self.backend = open_search_backend(
            settings, sessionmaker=sessionmaker, request_rebuild=no_rebuild
        )
        self._listener = ChangeListener(
            listen_dsn(settings.async_database_url), channel=SEARCH_CHANNEL
        )
        self._indexer = SearchIndexer(
            sessionmaker=sessionmaker,
            redis=self._redis,
            backend=self.backend,
            listener=self._listener,
            owner_id=f"bench-sync-child-{os.getpid()}",
        )

    async def start(self) -> None:
        self._listener.start()
        self._indexer.start()

    async def queued(self) -> int:
        """The tenant's queue rows (one message may have several)."""
        from sqlalchemy import text

        async with self._sessionmaker() as session:
            count = await session.scalar(
                text("SELECT count(*) FROM search_queue WHERE tenant_id = :tenant"),
                {"tenant": self._tenant_id},
            )
        return int(count or 0)

    async def until_empty(self) -> None:
        """Poll the queue: the indexer's own wake-ups are not observable from here."""
        while True:
            if not await self.queued():
                return
            await asyncio.sleep(QUEUE_POLL_SECONDS)

    async def check(self) -> dict[str, Any]:
        """What the index holds now: its state and how many documents (rows of
        `message_search`; documents of the Tantivy index's latest commit)."""
        from sqlalchemy import text

        state = await self.backend.state(self._tenant_id)
        async with self._sessionmaker() as session:
            if self.backend.name == "postgres":
                documents = await session.scalar(
                    text("SELECT count(*) FROM message_search WHERE tenant_id = :tenant"),
                    {"tenant": self._tenant_id},
                )
            else:
                documents = await asyncio.to_thread(
                    tantivy_documents, self._index_root, self._tenant_id
                )
        return {"index_state": str(state), "index_documents": int(documents or 0)}

    async def stop(self) -> None:
        await self._indexer.stop()
        await self._listener.stop()
        await self.backend.aclose()
        await self._redis.aclose()


def tantivy_documents(root: Path, tenant_id: str) -> int:
    """Documents in the latest commit of the tenant's Tantivy index under `root`, read
    by a store of its own (as another api process would read it)."""
    from mailsvc.search.tantivy.store import IndexStore

    store = IndexStore(root)
    try:
        searcher = store.open(tenant_id).searcher
        return int(searcher.num_docs) if searcher is not None else -1
    finally:
        store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--searchable",
        action="store_true",
        help="run the search indexer beside the sync and time until the queue is empty",
    )
    parser.add_argument("--tenant", help="tenant id of the account")
    parser.add_argument("--account", help="account id (UUID)")
    parser.add_argument("--result", type=Path, help="where to write the JSON report")
    args = parser.parse_args()
    if not (args.tenant and args.account and args.result):
        print("bench/sync_child.py is a helper of bench/sync.py; run that instead.")
        return
    result = asyncio.run(run(args))
    args.result.write_text(json.dumps(result, indent=2))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
