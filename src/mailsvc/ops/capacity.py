"""The PostgreSQL connection budget: how large each process's pools may be so that all
mailsvc processes together fit the server's `max_connections`.

What one process opens at most:

    SQLAlchemy pool   DATABASE_POOL_SIZE, and as many again in overflow under load
                      (writes, IDLE syncs, jobs, `/ready`)
    read pool         DATABASE_READ_POOL_SIZE (raw asyncpg: the hot reads)
    LISTEN            api: 1 (SSE wake-ups); worker: 2 (webhook fan-out, search queue)

Who shares the server: API_REPLICAS x API_WORKERS api processes (API_WORKERS 0: one per
core, `api_workers`) and WORKER_REPLICAS workers. What they may use: `max_connections`
less the slots the server reserves (`superuser_reserved_connections`, and
`reserved_connections` from PostgreSQL 16) and TOOLS_RESERVE for the operator's tools
(`mailsvc check`, migrations, psql, pg_dump).

A pool size left unset is derived: the largest size up to DEFAULT_POOL_SIZE (the
same for both pools) with which every process fits, but never below MIN_POOL_SIZE.
Every process computes the same budget from the same settings, so the api processes
and the workers agree without talking to each other. `mailsvc check` fails when the
processes cannot fit (explicit sizes too large, or too many processes even at the
minimum), naming the numbers.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import structlog

from mailsvc.config import Settings
from mailsvc.kit.db import DEFAULT_CONNECTION_LIMITS, ConnectionLimits, read_connection_limits

log = structlog.get_logger("mailsvc.capacity")

DEFAULT_POOL_SIZE = 10
MIN_POOL_SIZE = 2
TOOLS_RESERVE = 5
API_LISTENERS = 1
WORKER_LISTENERS = 2
LIMITS_TIMEOUT_SECONDS = 5.0

CGROUP_ROOT = Path("/sys/fs/cgroup")


@dataclass(frozen=True, slots=True)
class PoolSizes:
    """One process's pools: `create_engine(pool_size=engine, max_overflow=overflow)`
    and `ReadPool.open(size=reads)`."""

    engine: int
    overflow: int
    reads: int

    def connections(self, *, listeners: int) -> int:
        """The most connections a process with these pools and `listeners` opens."""
        return self.engine + self.overflow + self.reads + listeners


@dataclass(frozen=True, slots=True)
class ConnectionBudget:
    """Every process's pools against what the server allows."""

    limits: ConnectionLimits
    api_replicas: int
    api_workers: int
    worker_processes: int
    sizes: PoolSizes

    @property
    def api_processes(self) -> int:
        return self.api_replicas * self.api_workers

    @property
    def usable(self) -> int:
        """Connections mailsvc's processes may hold between them."""
        return self.limits.max_connections - self.limits.reserved - TOOLS_RESERVE

    @property
    def needed(self) -> int:
        """Connections they hold when every pool is full."""
        return self.api_processes * self.sizes.connections(
            listeners=API_LISTENERS
        ) + self.worker_processes * self.sizes.connections(listeners=WORKER_LISTENERS)

    @property
    def fits(self) -> bool:
        return self.needed <= self.usable

    def describe(self) -> str:
        """The numbers, as `mailsvc check` prints them."""
        api = f"{self.api_processes} api process{'es' if self.api_processes != 1 else ''}"
        if self.api_replicas > 1:
            each = f"{self.api_workers} worker{'s' if self.api_workers != 1 else ''}"
            api += f" ({self.api_replicas} replicas x {each})"
        workers = f"{self.worker_processes} worker{'s' if self.worker_processes != 1 else ''}"
        processes = (
            f"{api} x {self.sizes.connections(listeners=API_LISTENERS)} + {workers} x "
            f"{self.sizes.connections(listeners=WORKER_LISTENERS)} connections; each: pool "
            f"{self.sizes.engine} + overflow {self.sizes.overflow}, reads {self.sizes.reads}"
        )
        server = (
            f"max_connections {self.limits.max_connections} less {self.limits.reserved} "
            f"reserved and {TOOLS_RESERVE} for tools"
        )
        if self.fits:
            return f"up to {self.needed} of {self.usable} ({server}): {processes}"
        return (
            f"{self.needed} needed, {self.usable} available ({server}): {processes}. Lower "
            "API_WORKERS or DATABASE_POOL_SIZE / DATABASE_READ_POOL_SIZE, or raise the "
            "server's max_connections"
        )


def cpu_quota_cores(root: Path = CGROUP_ROOT) -> int | None:
    """Cores this process's cgroup may use (`docker run --cpus`, a Kubernetes CPU
    limit), rounded up; None without a quota."""
    try:
        # cgroup v2: "<quota> <period>", or "max <period>" without a limit.
        quota, period = (root / "cpu.max").read_text().split()
    except (OSError, ValueError):
        try:
            quota = (root / "cpu" / "cpu.cfs_quota_us").read_text().strip()  # v1; -1: none
            period = (root / "cpu" / "cpu.cfs_period_us").read_text().strip()
        except OSError:
            return None
    try:
        quota_us, period_us = int(quota), int(period)
    except ValueError:
        return None  # "max"
    if quota_us <= 0 or period_us <= 0:
        return None
    return max(1, math.ceil(quota_us / period_us))


def usable_cores() -> int:
    """The cores this process may run on: its CPU affinity, capped by a cgroup quota.

    `os.cpu_count()` in a container is the host's count; a container limited with
    `--cpus 2` on a 32-core host should run 2 api processes, not 32.
    """
    cores = len(os.sched_getaffinity(0))
    quota = cpu_quota_cores()
    return max(1, min(cores, quota) if quota is not None else cores)


def api_workers(settings: Settings) -> int:
    """How many api processes `mailsvc serve` runs: API_WORKERS, or one per core."""
    return settings.api_workers or usable_cores()


def connection_budget(settings: Settings, *, limits: ConnectionLimits) -> ConnectionBudget:
    """The pools of every process (derived where unset; see the module docstring)."""
    workers = api_workers(settings)
    api_processes = settings.api_replicas * workers
    worker_processes = settings.worker_replicas
    processes = api_processes + worker_processes
    engine, reads = settings.database_pool_size, settings.database_read_pool_size
    # The per-process connections that do not depend on the size being derived.
    fixed = api_processes * API_LISTENERS + worker_processes * WORKER_LISTENERS
    fixed += processes * ((2 * engine if engine is not None else 0) + (reads or 0))
    # A derived size counts twice in the SQLAlchemy pool (pool + overflow), once in reads.
    units = (2 if engine is None else 0) + (1 if reads is None else 0)
    usable = limits.max_connections - limits.reserved - TOOLS_RESERVE
    derived = DEFAULT_POOL_SIZE  # stays unused when both sizes are set
    if units:
        derived = max(
            MIN_POOL_SIZE, min(DEFAULT_POOL_SIZE, (usable - fixed) // (processes * units))
        )
    engine = derived if engine is None else engine
    return ConnectionBudget(
        limits=limits,
        api_replicas=settings.api_replicas,
        api_workers=workers,
        worker_processes=worker_processes,
        sizes=PoolSizes(engine=engine, overflow=engine, reads=derived if reads is None else reads),
    )


def pool_sizes(settings: Settings, *, limits: ConnectionLimits) -> PoolSizes:
    """This process's pool sizes against a server allowing `limits`."""
    return connection_budget(settings, limits=limits).sizes


async def database_pool_sizes(settings: Settings) -> PoolSizes:
    """This process's pool sizes: as set, or derived from the server's limits.

    Reads `max_connections` over a connection of its own only when a size is left to
    derive; a server that cannot be reached is assumed to have PostgreSQL's defaults
    (100), so the process still starts, with pools no larger than they may be.
    """
    url = settings.async_database_url
    if settings.database_pool_size is not None and settings.database_read_pool_size is not None:
        return pool_sizes(settings, limits=DEFAULT_CONNECTION_LIMITS)  # both as set
    limits = await read_connection_limits(url, wait_seconds=LIMITS_TIMEOUT_SECONDS)
    if limits is None:
        limits = DEFAULT_CONNECTION_LIMITS
        log.warning("db.limits_unknown", assumed_max_connections=limits.max_connections)
    budget = connection_budget(settings, limits=limits)
    if not budget.fits:
        log.warning("db.connections_over_budget", detail=budget.describe())
    return budget.sizes
