"""The read pool: statements bound to a tenant, and a connection the server dropped
replaced by the retry of the read that found it dead."""

from __future__ import annotations

import asyncio

import asyncpg

from mailsvc.kit.reads import ReadPool, asyncpg_dsn

_WHO = "SELECT $1::text AS tenant, pg_backend_pid() AS pid"


async def test_the_tenant_is_the_first_parameter(database_url: str) -> None:
    reads = await ReadPool.open(database_url, size=1)
    try:
        row = await reads.fetchrow("tenant-a", "SELECT $1::text, $2::int + 1", 41)
        assert row is not None
        assert tuple(row) == ("tenant-a", 42)
        assert await reads.fetchrow("tenant-a", "SELECT 1 WHERE $1::text = 'b'") is None
    finally:
        await reads.close()


async def test_a_connection_dropped_while_idle_is_replaced(database_url: str) -> None:
    reads = await ReadPool.open(database_url, size=1)
    try:
        first = await reads.fetchrow("t", _WHO)
        assert first is not None
        await _terminate(database_url, first["pid"])
        await asyncio.sleep(0.1)  # the termination reaches the pooled connection's socket
        second = await reads.fetchrow("t", _WHO)
        assert second is not None
        assert second["pid"] != first["pid"]
    finally:
        await reads.close()


async def test_a_read_cut_off_by_the_server_is_run_again(database_url: str) -> None:
    reads = await ReadPool.open(database_url, size=1)
    try:
        read = asyncio.create_task(
            reads.fetchrow("t", "SELECT $1::text AS tenant, pg_backend_pid() AS pid, pg_sleep(1)")
        )
        cut = await _backend_running(database_url, "pg_sleep(1)")
        await _terminate(database_url, cut)
        row = await read
        assert row is not None
        assert row["tenant"] == "t"
        assert row["pid"] != cut
    finally:
        await reads.close()


async def _backend_running(database_url: str, statement_part: str) -> int:
    """The pid of the backend running a statement containing `statement_part`."""
    watcher = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        for _ in range(100):
            pid = await watcher.fetchval(
                "SELECT pid FROM pg_stat_activity WHERE state = 'active' "
                "AND query LIKE '%' || $1 || '%' AND pid <> pg_backend_pid()",
                statement_part,
            )
            if pid is not None:
                return int(pid)
            await asyncio.sleep(0.01)
    finally:
        await watcher.close()
    raise AssertionError(f"no backend runs {statement_part!r}")


async def _terminate(database_url: str, pid: int) -> None:
    killer = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        assert await killer.fetchval("SELECT pg_terminate_backend($1)", pid)
    finally:
        await killer.close()
