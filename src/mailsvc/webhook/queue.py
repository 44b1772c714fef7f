"""Enqueueing delivery jobs so that no new delivery waits for the sweep.

One job per (webhook, account) at a time carries that account's deliveries in order,
under a stable arq job id: an enqueue while it is queued is dropped, and the queued
job finds the new deliveries. arq also drops an enqueue while the job *runs* (or
after its worker died, until arq expires it), and the running job may already have
looked for work. Then a second job, with an id of its own (`marker`), is queued; the
claim in `WebhookDeliverer` keeps two jobs from sending out of order.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from arq.connections import ArqRedis
from arq.constants import in_progress_key_prefix

DELIVER_JOB = "deliver_webhook"


def delivery_job_id(webhook_id: uuid.UUID, account_id: uuid.UUID) -> str:
    return f"webhook:{webhook_id}:{account_id}"


async def enqueue_delivery(
    arq: ArqRedis,
    *,
    tenant_id: str,
    webhook_id: uuid.UUID,
    account_id: uuid.UUID,
    marker: str,
) -> None:
    """Make sure a job will look at the (webhook, account)'s deliveries from now on."""
    job_id = delivery_job_id(webhook_id, account_id)
    args = (DELIVER_JOB, tenant_id, str(webhook_id), str(account_id))
    if await arq.enqueue_job(*args, _job_id=job_id) is not None:
        return
    if await arq.exists(in_progress_key_prefix + job_id):
        await arq.enqueue_job(*args, _job_id=f"{job_id}:{marker}")


async def enqueue_retry(
    arq: ArqRedis,
    *,
    tenant_id: str,
    webhook_id: uuid.UUID,
    account_id: uuid.UUID,
    delivery_id: uuid.UUID,
    attempts: int,
    at: datetime,
) -> None:
    """A job at `at`, when the (webhook, account)'s next delivery is due; once per
    delivery and attempt however often it is asked for."""
    await arq.enqueue_job(
        DELIVER_JOB,
        tenant_id,
        str(webhook_id),
        str(account_id),
        _job_id=f"{delivery_job_id(webhook_id, account_id)}:retry:{delivery_id}:{attempts}",
        _defer_until=at,
    )
