"""A raw asyncpg pool for the hot reads, each statement bound to one tenant.

The message list, message get, search page assembly, thread list, mailbox list and
sync status read through this pool instead of SQLAlchemy: its execution path (ORM
compile state, statement cache key, result processing) was ~15% of a list request's
CPU (docs/performance.md). Each read is one statement whose text is a module
constant or built from a few fixed fragments, so asyncpg's statement cache prepares
it once per connection and later requests only bind and execute.

Tenancy holds by construction here too: every statement's `$1` is the tenant id, the
only way to run one is `ReadPool.fetch(tenant_id, sql, ...)` (a domain's reads
extend `TenantReads`, built with the tenant, as repositories extend
`TenantRepository`), and
tests/test_tenant_scoping.py checks that each tenant table a read statement names is
filtered on `tenant_id = $1`.

A connection the server dropped while idle is replaced by asyncpg's pool when it is
next taken; a statement the server cuts off half-way (a restart, a terminated backend)
is run once more on a fresh connection: reads are idempotent.
"""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg

# The same planner setting as the SQLAlchemy engine (kit/db.py): a generic plan
# chosen without the parameter values mis-estimates tenants of very different sizes.
SERVER_SETTINGS = {"plan_cache_mode": "force_custom_plan"}

_CONNECTION_LOST = (
    asyncpg.ConnectionDoesNotExistError,
    asyncpg.InterfaceError,
    asyncpg.AdminShutdownError,
    ConnectionError,
)


def asyncpg_dsn(async_database_url: str) -> str:
    """The asyncpg DSN of a `postgresql+asyncpg://` SQLAlchemy URL."""
    return async_database_url.replace("postgresql+asyncpg://", "postgresql://", 1)


def json_time(column: str) -> str:
    """SQL rendering a timestamptz as a JSON string the way pydantic does (what the
    routes answered before PostgreSQL built their JSON): UTC with `Z`, microseconds
    only when there are any; SQL NULL stays NULL."""
    return (
        f"(to_char({column} AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS') || "
        f"CASE WHEN extract(microseconds FROM {column})::bigint % 1000000 = 0 THEN '' "
        f"ELSE to_char({column} AT TIME ZONE 'UTC', '.US') END || 'Z')"
    )


class ReadPool:
    """Connections for tenant-bound read statements (`$1` is always the tenant)."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    @classmethod
    async def open(cls, async_database_url: str, *, size: int) -> ReadPool:
        """A pool of up to `size` connections, none opened before the first read.

        Opening lazily lets the api start (and say so on /ready) while PostgreSQL is
        down, as the SQLAlchemy engine does.
        """
        pool = asyncpg.create_pool(
            asyncpg_dsn(async_database_url),
            min_size=0,
            max_size=size,
            server_settings=SERVER_SETTINGS,
        )
        await pool
        return cls(pool)

    async def fetch(self, tenant_id: str, sql: str, *args: object) -> list[asyncpg.Record]:
        """The rows of `sql` run with `tenant_id` as `$1` and `args` as `$2`..."""
        try:
            return await self._pool.fetch(sql, tenant_id, *args)
        except _CONNECTION_LOST:
            return await self._pool.fetch(sql, tenant_id, *args)

    async def fetchrow(self, tenant_id: str, sql: str, *args: object) -> asyncpg.Record | None:
        """The first row of `sql` (see `fetch`), or None."""
        rows: Sequence[asyncpg.Record] = await self.fetch(tenant_id, sql, *args)
        return rows[0] if rows else None

    async def close(self) -> None:
        """Close every connection, waiting for reads under way."""
        await self._pool.close()


class TenantReads:
    """Base of a domain's hot reads: built with one tenant, every statement of it
    runs bound to that tenant (the read pool's counterpart of `TenantRepository`)."""

    def __init__(self, reads: ReadPool, tenant_id: str) -> None:
        self._reads = reads
        self.tenant_id = tenant_id

    async def fetch(self, sql: str, *args: object) -> list[asyncpg.Record]:
        """The rows of `sql`, `$1` the tenant and `args` from `$2` on."""
        return await self._reads.fetch(self.tenant_id, sql, *args)

    async def fetchrow(self, sql: str, *args: object) -> asyncpg.Record | None:
        """The first row of `sql` (see `fetch`), or None."""
        return await self._reads.fetchrow(self.tenant_id, sql, *args)
