"""Asking for a sync of an account, from any domain, so that no trigger is ever lost.

Accounts, message actions and the outbox ask for syncs; the sync engine runs them.
This module is the contract between them and imports no domain package.

arq drops an enqueue whose `_job_id` is already queued or running. A trigger that
arrives while the account's job runs would be lost, so it leaves a mark in Redis
instead, and the job runs one more pass when it finds the mark at its end.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from arq.connections import ArqRedis

SYNC_JOB = "sync_account"
_AGAIN_PREFIX = "mailsvc:sync:again:"
_AGAIN_TTL_SECONDS = 24 * 3600


def sync_job_id(account_id: uuid.UUID) -> str:
    return f"sync:{account_id}"


@dataclass(frozen=True, slots=True)
class Enqueued:
    job_id: str
    queued: bool  # False: a job for this account was already queued or running


async def enqueue_sync(
    arq: ArqRedis, *, tenant_id: str, account_id: uuid.UUID, full: bool = False
) -> Enqueued:
    job_id = sync_job_id(account_id)
    job = await arq.enqueue_job(SYNC_JOB, tenant_id, str(account_id), full, _job_id=job_id)
    if job is None:
        await arq.set(
            _AGAIN_PREFIX + str(account_id), "full" if full else "1", ex=_AGAIN_TTL_SECONDS
        )
    return Enqueued(job_id=job_id, queued=job is not None)


async def take_again_mark(arq: ArqRedis, account_id: uuid.UUID) -> str | None:
    """The mark left by triggers that arrived during a run (consumed)."""
    value = await arq.getdel(_AGAIN_PREFIX + str(account_id))
    if value is None:
        return None
    return value.decode() if isinstance(value, bytes) else str(value)
