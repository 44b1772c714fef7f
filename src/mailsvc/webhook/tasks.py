"""The webhook parts of the arq worker: the delivery job, the sweep, the fan-out task."""

from __future__ import annotations

import time
import uuid
from datetime import timedelta
from typing import Any

import structlog
from arq import cron
from arq.cron import CronJob
from arq.worker import Function, func

from mailsvc.config import Settings
from mailsvc.event.listener import ChangeListener, listen_dsn
from mailsvc.state import build_secret_box
from mailsvc.webhook.client import WebhookClient
from mailsvc.webhook.deliverer import JOB_BUDGET_SECONDS, WebhookDeliverer
from mailsvc.webhook.fanout import WebhookFanout
from mailsvc.webhook.queue import DELIVER_JOB, enqueue_delivery
from mailsvc.webhook.repository import due_deliveries

log = structlog.get_logger("mailsvc.webhook")

SWEEP_SECONDS = 15
# A due delivery is left this long to the job already enqueued for it.
_SWEEP_GRACE = timedelta(seconds=10)
_SWEEP_BATCH = 1000


async def deliver_webhook(
    ctx: dict[str, Any], tenant_id: str, webhook_id: str, account_id: str
) -> int:
    """arq job: deliver the (webhook, account)'s due events in order; how many attempted."""
    deliverer: WebhookDeliverer = ctx["webhook_deliverer"]
    return await deliverer.run(tenant_id, uuid.UUID(webhook_id), uuid.UUID(account_id))


async def sweep_webhooks(ctx: dict[str, Any]) -> int:
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
        deliver_webhook,
        name=DELIVER_JOB,
        keep_result=0,
        max_tries=1,
        timeout=JOB_BUDGET_SECONDS + 2 * settings.webhook_timeout_seconds + 30,
    )


def sweep_cron_job() -> CronJob:
    """The sweep, every `SWEEP_SECONDS` and once at startup (a restarted worker takes
    over what its predecessor left)."""
    return cron(sweep_webhooks, second=set(range(0, 60, SWEEP_SECONDS)), run_at_startup=True)


async def start_webhooks(ctx: dict[str, Any]) -> None:
    """Worker startup: the delivery client and the fan-out task (needs `settings`,
    `sessionmaker` and arq's `redis` in `ctx`)."""
    settings: Settings = ctx["settings"]
    client = WebhookClient(timeout_seconds=settings.webhook_timeout_seconds)
    listener = ChangeListener(listen_dsn(settings.async_database_url))
    fanout = WebhookFanout(sessionmaker=ctx["sessionmaker"], arq=ctx["redis"], listener=listener)
    ctx.update(
        webhook_client=client,
        webhook_listener=listener,
        webhook_fanout=fanout,
        webhook_deliverer=WebhookDeliverer(
            sessionmaker=ctx["sessionmaker"],
            secrets=build_secret_box(settings),
            settings=settings,
            arq=ctx["redis"],
            client=client,
        ),
    )
    listener.start()
    fanout.start()


async def stop_webhooks(ctx: dict[str, Any]) -> None:
    """Worker shutdown: stop the fan-out and its listener, close the client."""
    fanout: WebhookFanout | None = ctx.get("webhook_fanout")
    if fanout is not None:
        await fanout.stop()
    listener: ChangeListener | None = ctx.get("webhook_listener")
    if listener is not None:
        await listener.stop()
    client: WebhookClient | None = ctx.get("webhook_client")
    if client is not None:
        await client.aclose()
