"""arq `WorkerSettings`, built from mailsvc settings.

Jobs receive a typed context (`WorkerContext`) with the shared resources built in
`startup`; they carry ids only and open their own transactions.
"""

from __future__ import annotations

import os
import socket
from typing import Any

import structlog
from arq import cron
from arq.connections import RedisSettings
from sqlalchemy.ext.asyncio import AsyncEngine

from mailsvc.config import Settings, get_settings
from mailsvc.event.retention import trim_change_log
from mailsvc.kit.db import create_engine, create_sessionmaker
from mailsvc.logging import configure_logging
from mailsvc.outbox.dispatch import file_copy_job_function, send_job_function, sweep_outbox
from mailsvc.outbox.sender import OutboxSender
from mailsvc.state import build_secret_box
from mailsvc.sync.engine import SyncEngine
from mailsvc.sync.parser import ParserPool
from mailsvc.sync.tasks import resync_all, sync_job_function
from mailsvc.webhook.tasks import (
    deliver_job_function,
    start_webhooks,
    stop_webhooks,
    sweep_cron_job,
)

log = structlog.get_logger("mailsvc.worker")

HEARTBEAT_KEY_PREFIX = "mailsvc:worker:heartbeat:"
HEARTBEAT_TTL_SECONDS = 180


async def startup(ctx: dict[str, Any]) -> None:
    settings = get_settings()
    engine = create_engine(settings.async_database_url, pool_size=settings.database_pool_size)
    sessionmaker = create_sessionmaker(engine)
    parser = ParserPool(processes=settings.sync_parse_processes or None)
    secrets = build_secret_box(settings)
    ctx.update(
        settings=settings,
        engine=engine,
        sessionmaker=sessionmaker,
        parser=parser,
        sync_engine=SyncEngine(
            sessionmaker=sessionmaker,
            secrets=secrets,
            settings=settings,
            parser=parser,
        ),
        outbox_sender=OutboxSender(
            sessionmaker=sessionmaker, secrets=secrets, settings=settings, arq=ctx["redis"]
        ),
        worker_name=f"{socket.gethostname()}:{os.getpid()}",
    )
    await start_webhooks(ctx)
    await record_heartbeat(ctx)
    log.info("worker.started", worker=ctx["worker_name"])


async def shutdown(ctx: dict[str, Any]) -> None:
    await stop_webhooks(ctx)
    parser: ParserPool | None = ctx.get("parser")
    if parser is not None:
        parser.close()
    engine: AsyncEngine | None = ctx.get("engine")
    if engine is not None:
        await engine.dispose()
    log.info("worker.stopped", worker=ctx.get("worker_name"))


async def record_heartbeat(ctx: dict[str, Any]) -> None:
    """Cron: mark this worker alive in Redis, so operators can see running workers."""
    await ctx["redis"].set(
        HEARTBEAT_KEY_PREFIX + ctx["worker_name"], "alive", ex=HEARTBEAT_TTL_SECONDS
    )


def worker_settings(settings: Settings | None = None) -> type:
    """A `WorkerSettings` class for `arq.run_worker`."""
    resolved = settings or get_settings()
    configure_logging(resolved.log_level)

    interval = resolved.sync_resync_interval_minutes
    resync_cron = (
        [cron(resync_all, minute=set(range(0, 60, interval)), second=30)] if interval else []
    )

    class WorkerSettings:
        redis_settings = RedisSettings.from_dsn(resolved.required_redis_url)
        functions = [  # noqa: RUF012
            sync_job_function(),
            send_job_function(),
            file_copy_job_function(),
            deliver_job_function(resolved),
        ]
        cron_jobs = [  # noqa: RUF012 - arq reads class attributes
            cron(record_heartbeat, second=0, run_at_startup=False),
            # Overdue sends: lost jobs, attempts of processes that died.
            cron(sweep_outbox, second={5, 20, 35, 50}, run_at_startup=True),
            cron(trim_change_log, minute=17, second=40, run_at_startup=False),
            *resync_cron,
            # Overdue webhook deliveries: lost jobs, leases of workers that died.
            sweep_cron_job(),
        ]
        # arq's default 0.5 s between queue polls would be most of the 1 s budget from
        # a mail arriving to its webhook; a poll is one ZRANGEBYSCORE on Redis.
        poll_delay = 0.1
        on_startup = startup
        on_shutdown = shutdown
        handle_signals = True

    return WorkerSettings
