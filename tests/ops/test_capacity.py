"""The connection budget: pool sizes derived from max_connections, and `mailsvc check`'s
verdict on them against the run's real PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from mailsvc.config import Settings
from mailsvc.kit.db import ConnectionLimits, connection_limits, create_engine
from mailsvc.ops.capacity import (
    DEFAULT_POOL_SIZE,
    MIN_POOL_SIZE,
    TOOLS_RESERVE,
    PoolSizes,
    api_workers,
    connection_budget,
    cpu_quota_cores,
    database_pool_sizes,
    pool_sizes,
    usable_cores,
)
from mailsvc.ops.checks import check_connections
from tests.fixtures.net import free_port

POSTGRES_DEFAULTS = ConnectionLimits(max_connections=100, reserved=3)
LARGE = ConnectionLimits(max_connections=1000, reserved=3)


def _settings(**values: Any) -> Settings:
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


# -- pure ---------------------------------------------------------------------------


def test_a_large_server_gets_the_default_pools() -> None:
    sizes = pool_sizes(_settings(api_workers=2), limits=LARGE)
    assert sizes == PoolSizes(
        engine=DEFAULT_POOL_SIZE, overflow=DEFAULT_POOL_SIZE, reads=DEFAULT_POOL_SIZE
    )


def test_derived_pools_shrink_until_every_process_fits() -> None:
    # 100 - 3 reserved - 5 for tools = 92 usable; 2 api processes (1 LISTEN each) and a
    # worker (2) leave 88 for 3 processes x (pool + overflow + reads) = 9 x size.
    budget = connection_budget(_settings(api_workers=2), limits=POSTGRES_DEFAULTS)
    assert budget.usable == 100 - 3 - TOOLS_RESERVE
    assert budget.sizes == PoolSizes(engine=9, overflow=9, reads=9)
    assert budget.needed == 2 * (27 + 1) + (27 + 2)
    assert budget.fits
    # One size more would not have fitted.
    assert 2 * (30 + 1) + (30 + 2) > budget.usable


def test_every_process_counts_replicas_and_workers() -> None:
    budget = connection_budget(
        _settings(api_workers=2, api_replicas=3, worker_replicas=2), limits=POSTGRES_DEFAULTS
    )
    assert budget.api_processes == 6
    # 92 - 6 - 4 LISTEN = 82 for 8 processes x 3 x size: size 3.
    assert budget.sizes == PoolSizes(engine=3, overflow=3, reads=3)
    assert budget.fits
    assert "6 api processes (3 replicas x 2 workers)" in budget.describe()


def test_a_size_that_is_set_is_kept_and_the_other_takes_the_rest() -> None:
    settings = _settings(api_workers=2, database_pool_size=12)
    budget = connection_budget(settings, limits=POSTGRES_DEFAULTS)
    # 92 - 4 LISTEN - 3 x 24 = 16 for 3 read pools.
    assert budget.sizes == PoolSizes(engine=12, overflow=12, reads=5)
    assert budget.fits


def test_sizes_that_are_set_can_exceed_the_budget_and_say_so() -> None:
    settings = _settings(api_workers=4, database_pool_size=10, database_read_pool_size=10)
    budget = connection_budget(settings, limits=POSTGRES_DEFAULTS)
    assert budget.sizes == PoolSizes(engine=10, overflow=10, reads=10)
    assert budget.needed == 4 * 31 + 32
    assert not budget.fits
    detail = budget.describe()
    assert detail.startswith(f"{4 * 31 + 32} needed, 92 available (max_connections 100")
    assert "4 api processes x 31 + 1 worker x 32 connections" in detail
    assert "Lower API_WORKERS or DATABASE_POOL_SIZE / DATABASE_READ_POOL_SIZE" in detail


def test_too_many_processes_fail_even_at_the_smallest_pools() -> None:
    budget = connection_budget(_settings(api_workers=20), limits=POSTGRES_DEFAULTS)
    assert budget.sizes == PoolSizes(engine=MIN_POOL_SIZE, overflow=MIN_POOL_SIZE, reads=2)
    assert not budget.fits


def test_api_workers_is_the_setting_or_one_per_usable_core() -> None:
    assert api_workers(_settings(api_workers=3)) == 3
    assert api_workers(_settings(api_workers=0)) == usable_cores() >= 1


@pytest.mark.parametrize(
    ("files", "cores"),
    [
        ({"cpu.max": "max 100000\n"}, None),
        ({"cpu.max": "150000 100000\n"}, 2),
        ({"cpu.max": "50000 100000\n"}, 1),
        ({"cpu/cpu.cfs_quota_us": "-1\n", "cpu/cpu.cfs_period_us": "100000\n"}, None),
        ({"cpu/cpu.cfs_quota_us": "400000\n", "cpu/cpu.cfs_period_us": "100000\n"}, 4),
        ({}, None),
    ],
)
def test_a_cgroup_cpu_quota_caps_the_cores(
    tmp_path: Path, files: dict[str, str], cores: int | None
) -> None:
    for name, content in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(content)
    assert cpu_quota_cores(tmp_path) == cores


# -- against the run's PostgreSQL -----------------------------------------------------


@pytest.fixture
async def database(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(database_url, pool_size=1)
    yield engine
    await engine.dispose()


async def test_the_check_passes_with_the_numbers_and_fails_when_they_cannot_fit(
    database: AsyncEngine, database_url: str
) -> None:
    async with database.connect() as connection:
        limits = await connection_limits(connection)
    assert limits.max_connections > limits.reserved >= 0

    fitting = await check_connections(database, _settings(database_url=database_url, api_workers=1))
    assert fitting.name == "connections"
    assert fitting.ok, fitting.detail
    assert fitting.detail.startswith("up to ")
    assert f"max_connections {limits.max_connections} less {limits.reserved} reserved" in (
        fitting.detail
    )

    # As many api processes as the server has slots: not even the smallest pools fit.
    crowded = _settings(database_url=database_url, api_workers=limits.max_connections)
    failing = await check_connections(database, crowded)
    assert not failing.ok
    assert f"{limits.max_connections} api processes x" in failing.detail
    assert "raise the server's max_connections" in failing.detail


async def test_a_process_derives_its_pools_from_the_server_it_uses(database_url: str) -> None:
    settings = _settings(database_url=database_url, api_workers=2)
    engine = create_engine(database_url, pool_size=1)
    try:
        async with engine.connect() as connection:
            limits = await connection_limits(connection)
    finally:
        await engine.dispose()
    assert await database_pool_sizes(settings) == pool_sizes(settings, limits=limits)
    # Sizes that are set are taken as they are, without asking the server.
    explicit = settings.model_copy(update={"database_pool_size": 4, "database_read_pool_size": 3})
    assert await database_pool_sizes(explicit) == PoolSizes(engine=4, overflow=4, reads=3)


async def test_an_unreachable_server_is_assumed_to_have_postgres_defaults() -> None:
    settings = _settings(
        database_url=f"postgresql://nobody@127.0.0.1:{free_port()}/none", api_workers=2
    )
    assert await database_pool_sizes(settings) == pool_sizes(settings, limits=POSTGRES_DEFAULTS)
