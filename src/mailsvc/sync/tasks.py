"""arq jobs of the sync engine: one account's pass, and the periodic safety nets.

A worker that dies mid-sync (SIGKILL, OOM, a lost host) leaves arq's in-progress key
of the account's job behind for the job's whole timeout (6 h), and every enqueue of
the account's sync is dropped meanwhile. So a running `sync_account` keeps a short
marker key renewed (`mailsvc:sync:running:<account>`), and `recover_interrupted_syncs`
(cron, every few seconds) hands a job whose in-progress key outlived its marker back
to arq's queue: the next worker runs it again, and the pass resumes from the
`uidnext` committed with the last stored batch.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
import uuid
from typing import TypedDict

import structlog
from arq.connections import ArqRedis
from arq.constants import default_queue_name, in_progress_key_prefix, retry_key_prefix
from arq.worker import Function, func
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from mailsvc.account.repository import accounts_to_watch
from mailsvc.errors import outage_detail, unreachable_dependency
from mailsvc.imap.errors import ImapError
from mailsvc.jobs import SYNC_JOB, enqueue_sync, sync_job_id, take_again_mark
from mailsvc.kit.jobs import arq_job
from mailsvc.kit.lease import Leases, hold
from mailsvc.sync.engine import AccountGoneError, SyncEngine, SyncReport

log = structlog.get_logger("mailsvc.sync.tasks")

MAX_PASSES_PER_JOB = 5
# How long a pass waits for PostgreSQL to come back before the job gives up.
DATABASE_OUTAGE_PATIENCE_SECONDS = 120.0

RUNNING_KEY_PREFIX = "mailsvc:sync:running:"
# A running job renews its marker every third of this; a worker that died is noticed
# this long after its last renewal, plus up to two sweeps.
RUNNING_TTL_SECONDS = 10.0
_SYNC_JOB_ID_PREFIX = sync_job_id(uuid.UUID(int=0)).removesuffix(str(uuid.UUID(int=0)))
_SUSPECT_KEY_PREFIX = "mailsvc:sync:orphan:"
# A job is handed back only when a sweep finds it without a marker, and another at
# least this long after finds the same (a job that has just started has a marker
# within milliseconds).
_SUSPECT_MIN_AGE_MS = 2_000
_SUSPECT_TTL_MS = 60_000

# KEYS: arq's in-progress key, arq's retry key, the running marker, the suspect mark.
# ARGV: minimum age of the suspect mark (ms), its TTL (ms). Returns 1 when handed back.
_HAND_BACK = """
if redis.call('EXISTS', KEYS[3]) == 1 or redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('DEL', KEYS[4])
  return 0
end
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local since = redis.call('GET', KEYS[4])
if not since then
  redis.call('SET', KEYS[4], now, 'PX', ARGV[2])
  return 0
end
if now - tonumber(since) < tonumber(ARGV[1]) then
  return 0
end
redis.call('DEL', KEYS[1], KEYS[2], KEYS[4])
return 1
"""


class SyncJobContext(TypedDict):
    """What the sync jobs read from the worker's context."""

    redis: ArqRedis
    sessionmaker: async_sessionmaker[AsyncSession]
    sync_engine: SyncEngine


def sync_running_key(account_id: str) -> str:
    """The marker a running sync job of the account keeps renewed."""
    return f"{RUNNING_KEY_PREFIX}{account_id}"


def sync_job_function() -> Function:
    """The arq registration of `sync_account`.

    `keep_result=0`: arq refuses to enqueue a job id whose result is still stored, which
    would block every sync of the account for as long as the result lives.
    """
    return func(arq_job(sync_account), name=SYNC_JOB, keep_result=0, timeout=6 * 3600, max_tries=1)


async def sync_account(
    ctx: SyncJobContext, tenant_id: str, account_id: str, full: bool
) -> dict[str, int]:
    """Sync one account; run again while triggers keep arriving during the pass."""
    # The marker tells `recover_interrupted_syncs` this job's worker is alive. Taken
    # by someone else (a run whose worker stalled, not died), the job runs all the
    # same: batches are idempotent, and the mailbox row lock orders their stores.
    marker = Leases(
        ctx["redis"],
        owner_id=f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}",
        ttl_seconds=RUNNING_TTL_SECONDS,
    )
    async with hold(marker, sync_running_key(account_id)):
        return await _passes(ctx, tenant_id, account_id, full)


async def _passes(
    ctx: SyncJobContext, tenant_id: str, account_id: str, full: bool
) -> dict[str, int]:
    engine = ctx["sync_engine"]
    account = uuid.UUID(account_id)
    totals = {"passes": 0, "new_messages": 0, "updated": 0, "deleted": 0}
    for _ in range(MAX_PASSES_PER_JOB):
        try:
            report = await _pass_riding_out_outages(engine, tenant_id, account, full=full)
        except AccountGoneError:
            log.info("sync.account_gone", account_id=account_id)
            return totals
        except ImapError as exc:
            # State and error are on the account already; the next trigger retries.
            log.warning("sync.failed", account_id=account_id, error=str(exc))
            return totals
        totals["passes"] += 1
        totals["new_messages"] += report.new_messages
        totals["updated"] += report.updated
        totals["deleted"] += report.deleted
        again = await take_again_mark(ctx["redis"], account)
        if again is None:
            return totals
        full = again == "full"
    # Still busy after several passes: hand over to a fresh job rather than loop forever.
    await enqueue_sync(ctx["redis"], tenant_id=tenant_id, account_id=account)
    return totals


async def _pass_riding_out_outages(
    engine: SyncEngine, tenant_id: str, account: uuid.UUID, *, full: bool
) -> SyncReport:
    """One pass; a pass cut off because PostgreSQL went away runs again once it is back.

    Nothing else would run it before the resync cron (and with IDLE off, nothing at
    all for 15 minutes): the job has one try, and its trigger was spent. Every batch
    commits with its mailbox's `uidnext`, so the pass resumes where the last commit
    left it; patience is bounded so a database that stays down ends the job.
    """
    deadline = time.monotonic() + DATABASE_OUTAGE_PATIENCE_SECONDS
    pause = 0.5
    while True:
        try:
            return await engine.sync_account(tenant_id, account, full=full)
        except Exception as exc:
            if unreachable_dependency(exc) != "PostgreSQL" or time.monotonic() + pause > deadline:
                raise
            log.warning(
                "sync.database_unreachable", account_id=str(account), error=outage_detail(exc)
            )
        await asyncio.sleep(pause)
        pause = min(pause * 2, 5.0)


async def resync_all(ctx: SyncJobContext) -> int:
    """Cron safety net: an incremental sync of every active account."""
    async with ctx["sessionmaker"]() as session:
        accounts = await accounts_to_watch(session)
    for account in accounts:
        await enqueue_sync(ctx["redis"], tenant_id=account.tenant_id, account_id=account.id)
    return len(accounts)


async def recover_interrupted_syncs(ctx: SyncJobContext) -> int:
    """Cron: hand the sync jobs of workers that died back to arq's queue.

    arq keeps a running job in its queue and marks it with an in-progress key for
    the job's timeout; a job whose in-progress key lives on while its running marker
    is gone (twice, `_SUSPECT_MIN_AGE_MS` apart) lost its worker. Deleting that key
    and the try counter lets the next worker take the job as a first try.
    """
    redis = ctx["redis"]
    hand_back = redis.register_script(_HAND_BACK)
    # A running job stays in arq's queue until it finishes.
    queued = await redis.zrange(default_queue_name, 0, -1)
    job_ids = [raw.decode() if isinstance(raw, bytes) else str(raw) for raw in queued]
    accounts = [
        job_id.removeprefix(_SYNC_JOB_ID_PREFIX)
        for job_id in job_ids
        if job_id.startswith(_SYNC_JOB_ID_PREFIX)
    ]
    if not accounts:
        return 0
    async with redis.pipeline(transaction=False) as pipe:
        for account_id in accounts:
            job_id = _SYNC_JOB_ID_PREFIX + account_id
            keys = [
                in_progress_key_prefix + job_id,
                retry_key_prefix + job_id,
                sync_running_key(account_id),
                _SUSPECT_KEY_PREFIX + account_id,
            ]
            await hand_back(keys=keys, args=[_SUSPECT_MIN_AGE_MS, _SUSPECT_TTL_MS], client=pipe)
        results = await pipe.execute()
    handed_back = 0
    for account_id, result in zip(accounts, results, strict=True):
        if result:
            handed_back += 1
            log.warning("sync.job_recovered", account_id=account_id)
    return handed_back
