"""Alembic environment: async (asyncpg) migrations against `mailsvc.models`' metadata.

The URL comes from `config.attributes["database_url"]` when mailsvc drives alembic
from code (`mailsvc.ops.migrations`), else from the `DATABASE_URL` setting. Online
migrations run in `asyncio.run`, so `command.upgrade` must be called where no event
loop is running: the alembic CLI, or a worker thread (`asyncio.to_thread`).
"""

from __future__ import annotations

import asyncio
from logging.config import fileConfig
from typing import Any

from alembic import context
from sqlalchemy import pool
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

import mailsvc.models
from mailsvc.config import Settings

config = context.config
target_metadata = mailsvc.models.Base.metadata

# Only the alembic command line configures logging: a process that migrates from
# code has its own logging, which fileConfig would replace.
if config.config_file_name is not None and config.cmd_opts is not None:
    fileConfig(config.config_file_name, disable_existing_loggers=False)


def _database_url() -> str:
    url = config.attributes.get("database_url")
    if url:
        return str(url)
    # Settings() rather than get_settings(): migrating needs the URL, not the secrets.
    return Settings().async_database_url


def _configure(**options: Any) -> None:
    context.configure(
        target_metadata=target_metadata,
        compare_type=True,
        compare_server_default=True,
        **options,
    )


def run_migrations_offline() -> None:
    """Emit the SQL (`alembic upgrade --sql`) instead of running it."""
    _configure(url=_database_url(), literal_binds=True, dialect_opts={"paramstyle": "named"})
    with context.begin_transaction():
        context.run_migrations()


def _run_migrations(connection: Connection) -> None:
    _configure(connection=connection)
    with context.begin_transaction():
        context.run_migrations()


async def run_migrations_online() -> None:
    engine = create_async_engine(_database_url(), poolclass=pool.NullPool)
    try:
        async with engine.connect() as connection:
            await connection.run_sync(_run_migrations)
    finally:
        await engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    asyncio.run(run_migrations_online())
