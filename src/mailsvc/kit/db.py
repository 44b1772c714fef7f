"""Declarative base, column conventions and the async engine/session factory."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Literal, NewType

from sqlalchemy import (
    BigInteger,
    DateTime,
    ForeignKeyConstraint,
    MetaData,
    String,
    event,
    exc,
    func,
    text,
)
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.pool import ConnectionPoolEntry, NullPool, PoolProxiedConnection

from mailsvc.kit.ids import uuid7

# Stable constraint names, so alembic autogenerate and hand-written migrations agree.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

Uid = NewType("Uid", int)
"""An IMAP UID (RFC 3501: 32-bit unsigned, so stored as bigint)."""
ModSeq = NewType("ModSeq", int)
"""A CONDSTORE mod-sequence (RFC 7162: 63-bit unsigned)."""

UuidPk = Annotated[uuid.UUID, mapped_column(primary_key=True, default=uuid7)]
TenantId = Annotated[str, mapped_column(String(64), nullable=False)]


def utcnow() -> datetime:
    return datetime.now(UTC)


def one_of(column: str, values: tuple[str, ...]) -> str:
    """A CHECK expression limiting a string column to `values` (our enums are strings)."""
    quoted = ", ".join(f"'{value}'" for value in values)
    return f"{column} IN ({quoted})"


def tenant_foreign_key(
    column: str, parent: str, *, ondelete: Literal["CASCADE", "SET NULL", "RESTRICT"]
) -> ForeignKeyConstraint:
    """A foreign key from `column` to `parent.id` that also matches `tenant_id`.

    A row can then only point at a row of its own tenant; the referential actions
    (`DELETE ... WHERE column = $1 AND tenant_id = $2`) use the tenant-led indexes
    the child has anyway; and it is the form a tenant-distributed PostgreSQL (Citus)
    requires. The parent needs `UniqueConstraint("tenant_id", "id")`. SET NULL
    clears `column` only (PostgreSQL 15+), never `tenant_id`.
    """
    action = f"SET NULL ({column})" if ondelete == "SET NULL" else ondelete
    # `column` first, so the naming convention names the key after it.
    return ForeignKeyConstraint(
        [column, "tenant_id"], [f"{parent}.id", f"{parent}.tenant_id"], ondelete=action
    )


class Base(DeclarativeBase):
    """Base of every table; `tenant_id` leads every composite index (see DESIGN.md)."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {  # noqa: RUF012 - SQLAlchemy reads this class attribute
        datetime: DateTime(timezone=True),
        Uid: BigInteger(),
        ModSeq: BigInteger(),
    }


class TimestampMixin:
    created_at: Mapped[datetime] = mapped_column(server_default=func.now(), nullable=False)
    updated_at: Mapped[datetime] = mapped_column(
        server_default=func.now(), onupdate=utcnow, nullable=False
    )


# A connection unused for longer than this is pinged before it is handed out.
IDLE_PING_SECONDS = 5.0


def create_engine(url: str, *, pool_size: int = 10, max_overflow: int | None = None) -> AsyncEngine:
    """An asyncpg engine that survives a database restart.

    It keeps up to `pool_size` connections and opens up to `max_overflow` (default:
    `pool_size`) more under load.

    asyncpg prepares every statement, and after five executions PostgreSQL may
    switch to a generic plan made without the parameter values. For searches that
    plan assumes a few hundred matches whatever the words are, and fetched and
    sorted 35,000 rows for `subject:draft` (bench/search.py: 572 ms against 42 ms
    with a custom plan). Planning each execution costs well under a millisecond.
    """
    engine = create_async_engine(
        url,
        pool_size=pool_size,
        max_overflow=pool_size if max_overflow is None else max_overflow,
        connect_args={"server_settings": {"plan_cache_mode": "force_custom_plan"}},
    )
    _ping_idle_connections(engine)
    return engine


def _ping_idle_connections(engine: AsyncEngine) -> None:
    """Ping a pooled connection at checkout only when it sat unused for a while.

    `pool_pre_ping` pings at every checkout: a database round trip that was 8% of a
    list request's CPU (bench/api.py). A connection in steady use has just proved
    itself; one idle across a database restart is the one that is stale. A failed
    ping makes the pool replace the connection (`DisconnectionError`).
    """

    @event.listens_for(engine.sync_engine, "checkin")
    def remember_checkin(dbapi_connection: object, record: ConnectionPoolEntry) -> None:
        record.info["checked_in_at"] = time.monotonic()

    @event.listens_for(engine.sync_engine, "checkout")
    def ping_if_idle(
        dbapi_connection: object, record: ConnectionPoolEntry, proxy: PoolProxiedConnection
    ) -> None:
        idle_since = record.info.get("checked_in_at")
        if idle_since is None or time.monotonic() - idle_since < IDLE_PING_SECONDS:
            return
        try:
            engine.dialect.do_ping(dbapi_connection)  # type: ignore[arg-type]
        except Exception as error:
            raise exc.DisconnectionError("stale pooled connection") from error


def create_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False, autoflush=False)


AfterCommit = Callable[[], Awaitable[object]]


def after_commit(session: AsyncSession, callback: AfterCommit) -> None:
    """Run `callback` once the session's transaction has committed.

    Jobs and notifications must not leave before the data they refer to is visible,
    or a fast worker would look for a row that does not exist yet.
    """
    session.info.setdefault("after_commit", []).append(callback)


async def run_after_commit(session: AsyncSession) -> None:
    callbacks: list[AfterCommit] = session.info.pop("after_commit", [])
    for callback in callbacks:
        await callback()


def discard_after_commit(session: AsyncSession) -> None:
    session.info.pop("after_commit", None)


async def ping(engine: AsyncEngine) -> None:
    """Round-trip to the database; raises if it cannot be reached."""
    async with engine.connect() as connection:
        await connection.execute(text("SELECT 1"))


async def alembic_revision(connection: AsyncConnection) -> str | None:
    """The migration revision the database is at, or None before the first migration."""
    exists = await connection.scalar(text("SELECT to_regclass('alembic_version') IS NOT NULL"))
    if not exists:
        return None
    revision: str | None = await connection.scalar(text("SELECT version_num FROM alembic_version"))
    return revision


@dataclass(frozen=True, slots=True)
class ConnectionLimits:
    """How many client connections the PostgreSQL server accepts."""

    max_connections: int
    # superuser_reserved_connections, plus reserved_connections from PostgreSQL 16:
    # slots an ordinary role can never have.
    reserved: int


# PostgreSQL's defaults: what a server of unknown configuration is assumed to allow.
DEFAULT_CONNECTION_LIMITS = ConnectionLimits(max_connections=100, reserved=3)


async def connection_limits(connection: AsyncConnection) -> ConnectionLimits:
    """The server's `max_connections` and the slots it reserves."""
    row = (
        await connection.execute(
            text(
                "SELECT current_setting('max_connections')::int, "
                "current_setting('superuser_reserved_connections')::int "
                # Missing before PostgreSQL 16: NULL, not an error, with missing_ok.
                "+ coalesce(current_setting('reserved_connections', true)::int, 0)"
            )
        )
    ).one()
    return ConnectionLimits(max_connections=row[0], reserved=row[1])


async def read_connection_limits(url: str, *, wait_seconds: float) -> ConnectionLimits | None:
    """`connection_limits` over one connection of its own; None when the server cannot
    be reached within `wait_seconds`."""
    engine = create_async_engine(url, poolclass=NullPool)
    try:
        async with asyncio.timeout(wait_seconds), engine.connect() as connection:
            return await connection_limits(connection)
    except (exc.SQLAlchemyError, OSError, TimeoutError):
        return None
    finally:
        await engine.dispose()
