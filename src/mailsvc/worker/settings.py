"""arq `WorkerSettings`, built from mailsvc settings.

`startup` opens the worker's runtime (`mailsvc.runtime`) and puts what the jobs read
into arq's context; every job declares the keys it reads as a TypedDict, and
`WorkerContext` below is checked by mypy to serve all of them. Jobs carry ids only
and open their own transactions.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from typing import Any, TypedDict, cast

import structlog
from arq import cron
from arq.connections import ArqRedis, RedisSettings
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from mailsvc.config import Settings, get_settings
from mailsvc.event.retention import RetentionJobContext, trim_change_log
from mailsvc.kit.jobs import arq_job
from mailsvc.logging import configure_logging
from mailsvc.outbox.dispatch import (
    OutboxJobContext,
    file_copy_job_function,
    send_job_function,
    sweep_outbox,
)
from mailsvc.outbox.sender import OutboxSender
from mailsvc.runtime import Role, Runtime, open_runtime, process_id
from mailsvc.search.indexer import SearchIndexer
from mailsvc.search.rebuild import SearchJobContext, rebuild_job_function
from mailsvc.sync.engine import SyncEngine
from mailsvc.sync.tasks import (
    SyncJobContext,
    recover_interrupted_syncs,
    resync_all,
    sync_job_function,
)
from mailsvc.webhook.deliverer import WebhookDeliverer
from mailsvc.webhook.tasks import (
    WebhookJobContext,
    deliver_job_function,
    sweep_cron_job,
)

log = structlog.get_logger("mailsvc.worker")

HEARTBEAT_KEY_PREFIX = "mailsvc:worker:heartbeat:"
HEARTBEAT_TTL_SECONDS = 180
_RUNTIME_KEY = "runtime_exit"


class WorkerContext(TypedDict):
    """arq's context in a mailsvc worker (arq adds `redis` and per-job keys itself)."""

    redis: ArqRedis
    settings: Settings
    sessionmaker: async_sessionmaker[AsyncSession]
    sync_engine: SyncEngine
    outbox_sender: OutboxSender
    webhook_deliverer: WebhookDeliverer
    search_indexer: SearchIndexer
    worker_name: str


def job_context(runtime: Runtime, redis: ArqRedis, worker_name: str) -> WorkerContext:
    assert runtime.sync_engine is not None, "built for Role.WORKER"
    assert runtime.webhooks is not None, "built for Role.WORKER"
    assert runtime.search_indexer is not None, "built for Role.WORKER"
    return WorkerContext(
        redis=redis,
        settings=runtime.settings,
        sessionmaker=runtime.sessionmaker,
        sync_engine=runtime.sync_engine,
        outbox_sender=runtime.outbox_sender,
        webhook_deliverer=runtime.webhooks,
        search_indexer=runtime.search_indexer,
        worker_name=worker_name,
    )


def _serves_every_job(
    ctx: WorkerContext,
) -> tuple[
    SyncJobContext, OutboxJobContext, WebhookJobContext, RetentionJobContext, SearchJobContext
]:
    # Never called: mypy proves here that the worker's context has every key, with
    # its type, that each domain's jobs read.
    return ctx, ctx, ctx, ctx, ctx


def _startup(settings: Settings) -> Callable[[dict[str, Any]], Awaitable[None]]:
    async def startup(ctx: dict[str, Any]) -> None:
        # One stack per worker, closed in `shutdown`; if building fails half-way,
        # `open_runtime` has already released what it built.
        stack = AsyncExitStack()
        runtime = await stack.enter_async_context(open_runtime(settings, role=Role.WORKER))
        ctx[_RUNTIME_KEY] = stack
        ctx.update(job_context(runtime, ctx["redis"], process_id()))
        await record_heartbeat(cast(WorkerContext, ctx))
        log.info("worker.started", worker=ctx["worker_name"])

    return startup


async def shutdown(ctx: dict[str, Any]) -> None:
    stack: AsyncExitStack | None = ctx.get(_RUNTIME_KEY)
    if stack is not None:
        await stack.aclose()
    log.info("worker.stopped", worker=ctx.get("worker_name"))


async def record_heartbeat(ctx: WorkerContext) -> None:
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
        [cron(arq_job(resync_all), minute=set(range(0, 60, interval)), second=30)]
        if interval
        else []
    )

    class WorkerSettings:
        redis_settings = RedisSettings.from_dsn(resolved.required_redis_url)
        functions = [  # noqa: RUF012
            sync_job_function(),
            send_job_function(),
            file_copy_job_function(),
            deliver_job_function(resolved),
            rebuild_job_function(),
        ]
        cron_jobs = [  # noqa: RUF012 - arq reads class attributes
            cron(arq_job(record_heartbeat), second=0, run_at_startup=False),
            # Overdue sends: lost jobs, attempts of processes that died.
            cron(arq_job(sweep_outbox), second={5, 20, 35, 50}, run_at_startup=True),
            # Sync jobs of workers that died mid-sync, handed back to the queue.
            cron(
                arq_job(recover_interrupted_syncs),
                second=set(range(0, 60, 5)),
                run_at_startup=True,
            ),
            cron(arq_job(trim_change_log), minute=17, second=40, run_at_startup=False),
            *resync_cron,
            # Overdue webhook deliveries: lost jobs, leases of workers that died.
            sweep_cron_job(),
        ]
        # arq's default 0.5 s between queue polls would be most of the 1 s budget from
        # a mail arriving to its webhook; a poll is one ZRANGEBYSCORE on Redis.
        poll_delay = 0.1
        on_startup = _startup(resolved)
        on_shutdown = shutdown
        handle_signals = True

    return WorkerSettings
