"""The webhook jobs of the arq worker: the delivery job and the sweep.

The fan-out task and the deliverer are built by `mailsvc.runtime` for the worker.
"""

from __future__ import annotations

import time
import uuid
from datetime import timedelta
from typing import TypedDict

import structlog
from arq import cron
from arq.connections import ArqRedis
from arq.cron import CronJob
from arq.worker import Function, func
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from mailsvc.config import Settings
from mailsvc.kit.jobs import arq_job
from mailsvc.webhook.deliverer import JOB_BUDGET_SECONDS, WebhookDeliverer
from mailsvc.webhook.queue import DELIVER_JOB, enqueue_delivery
from mailsvc.webhook.repository import due_deliveries

log = structlog.get_logger("mailsvc.webhook")

SWEEP_SECONDS = 15
# A due delivery is left this long to the job already enqueued for it.
_SWEEP_GRACE = timedelta(seconds=10)
_SWEEP_BATCH = 1000


class WebhookJobContext(TypedDict):
    """What the webhook jobs read from the worker's context."""

    redis: ArqRedis
    sessionmaker: async_sessionmaker[AsyncSession]
    webhook_deliverer: WebhookDeliverer


async def deliver_webhook(
    ctx: WebhookJobContext, tenant_id: str, webhook_id: str, account_id: str
) -> int:
    """arq job: deliver the (webhook, account)'s due events in order; how many attempted."""
    return await ctx["webhook_deliverer"].run(
        tenant_id, uuid.UUID(webhook_id), uuid.UUID(account_id)
    )


async def sweep_webhooks(ctx: WebhookJobContext) -> int:
    """arq cron: jobs for overdue deliveries (a lost enqueue, the lease of a dead worker)."""
    async with ctx["sessionmaker"]() as session:
        due = await due_deliveries(session, overdue_by=_SWEEP_GRACE, limit=_SWEEP_BATCH)
    marker = f"sweep:{int(time.time()) // SWEEP_SECONDS}"
    for tenant_id, webhook_id, account_id in due:
        await enqueue_delivery(
            ctx["redis"],
            tenant_id=tenant_id,
            webhook_id=webhook_id,
            account_id=account_id,
            marker=marker,
        )
    if due:
        log.info("webhook.swept", jobs=len(due))
    return len(due)


def deliver_job_function(settings: Settings) -> Function:
    """The arq registration of `deliver_webhook`: no result kept (arq would refuse the
    job id while one is stored), no arq-level retries (the delivery row decides)."""
    return func(
        arq_job(deliver_webhook),
        name=DELIVER_JOB,
        keep_result=0,
        max_tries=1,
        timeout=JOB_BUDGET_SECONDS + 2 * settings.webhook_timeout_seconds + 30,
    )


def sweep_cron_job() -> CronJob:
    """The sweep, every `SWEEP_SECONDS` and once at startup (a restarted worker takes
    over what its predecessor left)."""
    return cron(
        arq_job(sweep_webhooks), second=set(range(0, 60, SWEEP_SECONDS)), run_at_startup=True
    )
