"""Immediate sends in the api process, and the arq jobs for scheduled sends and retries."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta
from typing import TypedDict

import structlog
from arq import func
from arq.connections import ArqRedis
from arq.constants import in_progress_key_prefix, retry_key_prefix
from arq.worker import Function
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from mailsvc.kit.jobs import arq_job
from mailsvc.kit.tasks import cancel_and_wait
from mailsvc.ops.metrics import set_outbox_entries
from mailsvc.outbox.repository import copies_to_file, count_in_flight, due_entries
from mailsvc.outbox.sender import SEND_JOB, OutboxSender, send_job_id

FILE_COPY_JOB = "file_sent_copy"

log = structlog.get_logger("mailsvc.outbox")

# The sweep leaves a due entry this long to the attempt already scheduled for it. Short:
# a sweep racing that attempt costs one spare job (the claim lets one attempt run), while
# a send whose job was lost (Redis flushed) waits this long plus up to one sweep.
_SWEEP_GRACE = timedelta(seconds=5)
_SWEEP_BATCH = 500

# KEYS: arq's in-progress and retry keys of a job. Deletes them when the job is in
# progress; returns whether it was.
_HAND_BACK = """
if redis.call('EXISTS', KEYS[1]) == 0 then
  return 0
end
redis.call('DEL', KEYS[1], KEYS[2])
return 1
"""


class OutboxJobContext(TypedDict):
    """What the outbox jobs read from the worker's context."""

    redis: ArqRedis
    sessionmaker: async_sessionmaker[AsyncSession]
    outbox_sender: OutboxSender


class OutboxDispatcher:
    """Runs immediate sends as tasks of the api process.

    An attempt cut short by a shutdown leaves its entry `sending` under a lease; the
    worker's sweep takes it over when the lease ends, checking Sent first.
    """

    def __init__(self, sender: OutboxSender) -> None:
        self._sender = sender
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def sender(self) -> OutboxSender:
        return self._sender

    def start(self, tenant_id: str, entry_id: uuid.UUID) -> None:
        task = asyncio.create_task(self._attempt(tenant_id, entry_id))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _attempt(self, tenant_id: str, entry_id: uuid.UUID) -> None:
        try:
            await self._sender.attempt(tenant_id, entry_id)
        except Exception:
            # The entry stays claimed until its lease ends; the sweep retries it.
            log.exception("outbox.attempt_crashed", outbox_id=str(entry_id))

    async def wait_idle(self) -> None:
        """Wait for the attempts running now (tests and graceful shutdown)."""
        while self._tasks:
            await asyncio.wait(set(self._tasks))

    async def close(self) -> None:
        await cancel_and_wait(list(self._tasks))


async def send_outbox(ctx: OutboxJobContext, tenant_id: str, entry_id: str) -> str | None:
    """arq job: one attempt at an entry (a no-op when it is not due or already done)."""
    return await ctx["outbox_sender"].attempt(tenant_id, uuid.UUID(entry_id))


async def sweep_outbox(ctx: OutboxJobContext) -> int:
    """arq cron: enqueue entries whose attempt is overdue (a lost job, a dead process),
    and sent messages whose copy to the Sent mailbox is due another try; and set the
    outbox gauge (`mailsvc_outbox_entries`)."""
    async with ctx["sessionmaker"]() as session:
        due = await due_entries(session, overdue_by=_SWEEP_GRACE, limit=_SWEEP_BATCH)
        copies = await copies_to_file(session, limit=_SWEEP_BATCH)
        # Counted here, every 15 s, so that a scrape runs no SQL.
        set_outbox_entries(await count_in_flight(session))
    hand_back = ctx["redis"].register_script(_HAND_BACK)
    for tenant_id, entry_id in due:
        job_id = send_job_id(entry_id, 0) + ":sweep"
        job = await ctx["redis"].enqueue_job(SEND_JOB, tenant_id, str(entry_id), _job_id=job_id)
        # An earlier sweep's job of this entry is still "in progress" although the
        # entry's lease ended long ago: its worker died mid-attempt, and arq would keep
        # the job id taken for the worker's longest job timeout (hours). Hand the job
        # back to arq's queue; the next worker runs it as a first try. Were its worker
        # alive after all, the claim makes the second run a no-op.
        if job is None and await hand_back(
            keys=[in_progress_key_prefix + job_id, retry_key_prefix + job_id]
        ):
            log.warning("outbox.sweep_job_recovered", outbox_id=str(entry_id))
    for tenant_id, entry_id in copies:
        await ctx["redis"].enqueue_job(
            FILE_COPY_JOB, tenant_id, str(entry_id), _job_id=f"outbox-copy:{entry_id}"
        )
    if due or copies:
        log.info("outbox.swept", entries=len(due), copies=len(copies))
    return len(due) + len(copies)


async def file_sent_copy(ctx: OutboxJobContext, tenant_id: str, entry_id: str) -> bool:
    """arq job: file a sent message's copy in the Sent mailbox again."""
    return await ctx["outbox_sender"].file_copy(tenant_id, uuid.UUID(entry_id))


def send_job_function() -> Function:
    """The arq registration of `send_outbox`; no result kept, no arq-level retries
    (the outbox row decides about retries)."""
    return func(arq_job(send_outbox), name=SEND_JOB, keep_result=0, max_tries=1, timeout=30 * 60)


def file_copy_job_function() -> Function:
    """The arq registration of `file_sent_copy` (the row counts the tries)."""
    return func(
        arq_job(file_sent_copy), name=FILE_COPY_JOB, keep_result=0, max_tries=1, timeout=30 * 60
    )
