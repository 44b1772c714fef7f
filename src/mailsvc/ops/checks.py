"""Startup and readiness checks. Each names what failed.

`/ready` runs `run_checks` (database, Redis, migrations) on the process's own pools.
`mailsvc check` runs `startup_checks`: the steps of start-up (`runtime.open_runtime`)
that configuration can break, in the same way, so what would stop a start-up fails
here first: settings, secrets, the mail CA file, then the same three, and whether
every api and worker process's pools fit the server's `max_connections`.
"""

from __future__ import annotations

import asyncio
import ssl
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path

import redis.asyncio as aioredis
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from mailsvc.config import Settings, SettingsError, read_settings
from mailsvc.kit.crypto import SecretBox
from mailsvc.kit.db import alembic_revision, connection_limits, create_engine, ping
from mailsvc.kit.mailserver import tls_context
from mailsvc.kit.redis import create_redis
from mailsvc.ops.capacity import connection_budget
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


async def check_connections(engine: AsyncEngine, settings: Settings) -> CheckResult:
    """Every api and worker process's pools against the server's `max_connections`
    (`mailsvc.ops.capacity`)."""
    try:
        async with asyncio.timeout(CHECK_TIMEOUT_SECONDS), engine.connect() as connection:
            limits = await connection_limits(connection)
    except (SQLAlchemyError, OSError, TimeoutError) as exc:
        return CheckResult(
            "connections", False, f"cannot read max_connections: {type(exc).__name__}"
        )
    budget = connection_budget(settings, limits=limits)
    return CheckResult("connections", budget.fits, budget.describe())


async def run_checks(engine: AsyncEngine, redis: aioredis.Redis) -> list[CheckResult]:
    database, redis_result = await asyncio.gather(check_database(engine), check_redis(redis))
    migrations = (
        await check_migrations(engine)
        if database.ok
        else CheckResult("migrations", False, "skipped: database unreachable")
    )
    return [database, redis_result, migrations]


def check_secrets(settings: Settings) -> CheckResult:
    """The token secret and the encryption keys, checked and built as start-up does."""
    try:
        settings.validate_secrets()
        SecretBox(*settings.encryption_keys())
    except SettingsError as exc:
        return CheckResult("secrets", False, str(exc))
    signing = "JWT_SECRET" if settings.jwt_algorithm == "HS256" else "JWT_PUBLIC_KEY"
    return CheckResult("secrets", True, f"{signing} and ENCRYPTION_KEY usable")


def mail_tls_ca_problem(ca_file: Path | None) -> str | None:
    """Why the mail TLS context cannot be built with `ca_file`, or None if it can.

    Builds it as start-up does (`tls_context`, cached), so a success here is the
    context the process will use. Reads files: call it off the event loop.
    """
    try:
        tls_context(ca_file)
    except ssl.SSLError as exc:
        return f"MAIL_TLS_CA_FILE={ca_file}: not a PEM CA certificate ({exc.reason or exc})"
    except OSError as exc:
        return f"MAIL_TLS_CA_FILE={ca_file}: {exc.strerror or type(exc).__name__}"
    return None


async def check_mail_tls_ca(settings: Settings) -> CheckResult:
    """The TLS context for mail servers, with MAIL_TLS_CA_FILE when set."""
    ca_file = settings.mail_tls_ca_file
    problem = await asyncio.to_thread(mail_tls_ca_problem, ca_file)
    if problem is not None:
        return CheckResult("mail_tls_ca_file", False, problem)
    if ca_file is None:
        return CheckResult("mail_tls_ca_file", True, "not set: system CAs only")
    return CheckResult("mail_tls_ca_file", True, f"{ca_file} loaded")


async def check_servers(settings: Settings) -> list[CheckResult]:
    """Database, Redis, migrations and the connection budget, through pools built as
    start-up builds them."""
    async with AsyncExitStack() as stack:
        engine: AsyncEngine | None = None
        try:
            engine = create_engine(settings.async_database_url, pool_size=1)
        except SettingsError as exc:
            database = CheckResult("database", False, str(exc))
        else:
            stack.push_async_callback(engine.dispose)
            database = await check_database(engine)
        try:
            redis = create_redis(settings.required_redis_url)
        except SettingsError as exc:
            redis_result = CheckResult("redis", False, str(exc))
        else:
            stack.push_async_callback(redis.aclose)
            redis_result = await check_redis(redis)
        if engine is None or not database.ok:
            migrations = CheckResult("migrations", False, f"skipped: {database.name} failed")
            connections = CheckResult("connections", False, f"skipped: {database.name} failed")
        else:
            migrations = await check_migrations(engine)
            connections = await check_connections(engine, settings)
    return [database, redis_result, migrations, connections]


async def startup_checks() -> list[CheckResult]:
    """Every check `mailsvc check` prints; settings that do not load stop the rest."""
    try:
        # Reads `.env` and may generate the development secrets: off the event loop.
        settings = await asyncio.to_thread(read_settings)
    except SettingsError as exc:
        return [CheckResult("settings", False, str(exc))]
    loaded = CheckResult("settings", True, f"{settings.environment.value} environment")
    return [
        loaded,
        check_secrets(settings),
        await check_mail_tls_ca(settings),
        *await check_servers(settings),
    ]
