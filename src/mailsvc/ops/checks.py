"""Startup and readiness checks: database, Redis, migrations. Each names what failed."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import redis.asyncio as aioredis
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from mailsvc.kit.db import alembic_revision, ping
from mailsvc.ops.migrations import head_revision

CHECK_TIMEOUT_SECONDS = 5.0


@dataclass(frozen=True, slots=True)
class CheckResult:
    name: str
    ok: bool
    detail: str


async def check_database(engine: AsyncEngine) -> CheckResult:
    try:
        async with asyncio.timeout(CHECK_TIMEOUT_SECONDS):
            await ping(engine)
    except (SQLAlchemyError, OSError, TimeoutError) as exc:
        return CheckResult("database", False, f"unreachable: {type(exc).__name__}")
    return CheckResult("database", True, "reachable")


async def check_redis(redis: aioredis.Redis) -> CheckResult:
    try:
        async with asyncio.timeout(CHECK_TIMEOUT_SECONDS):
            await redis.ping()
    except (aioredis.RedisError, OSError, TimeoutError) as exc:
        return CheckResult("redis", False, f"unreachable: {type(exc).__name__}")
    return CheckResult("redis", True, "reachable")


async def check_migrations(engine: AsyncEngine) -> CheckResult:
    head = head_revision()
    try:
        async with asyncio.timeout(CHECK_TIMEOUT_SECONDS), engine.connect() as connection:
            current = await alembic_revision(connection)
    except (SQLAlchemyError, OSError, TimeoutError) as exc:
        return CheckResult("migrations", False, f"cannot read revision: {type(exc).__name__}")
    if current != head:
        return CheckResult(
            "migrations", False, f"database at {current or 'no revision'}, code expects {head}; "
            "run `mailsvc migrate`"
        )  # fmt: skip
    return CheckResult("migrations", True, f"at head {head}")


async def run_checks(engine: AsyncEngine, redis: aioredis.Redis) -> list[CheckResult]:
    database, redis_result = await asyncio.gather(check_database(engine), check_redis(redis))
    migrations = (
        await check_migrations(engine)
        if database.ok
        else CheckResult("migrations", False, "skipped: database unreachable")
    )
    return [database, redis_result, migrations]
