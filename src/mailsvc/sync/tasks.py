"""arq jobs of the sync engine: one account's pass, and the periodic safety net."""

from __future__ import annotations

import uuid
from typing import TypedDict

import structlog
from arq.connections import ArqRedis
from arq.worker import Function, func
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from mailsvc.account.repository import accounts_to_watch
from mailsvc.imap.errors import ImapError
from mailsvc.jobs import SYNC_JOB, enqueue_sync, take_again_mark
from mailsvc.kit.jobs import arq_job
from mailsvc.sync.engine import AccountGoneError, SyncEngine

log = structlog.get_logger("mailsvc.sync.tasks")

MAX_PASSES_PER_JOB = 5


class SyncJobContext(TypedDict):
    """What the sync jobs read from the worker's context."""

    redis: ArqRedis
    sessionmaker: async_sessionmaker[AsyncSession]
    sync_engine: SyncEngine


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
    engine = ctx["sync_engine"]
    account = uuid.UUID(account_id)
    totals = {"passes": 0, "new_messages": 0, "updated": 0, "deleted": 0}
    for _ in range(MAX_PASSES_PER_JOB):
        try:
            report = await engine.sync_account(tenant_id, account, full=full)
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


async def resync_all(ctx: SyncJobContext) -> int:
    """Cron safety net: an incremental sync of every active account."""
    async with ctx["sessionmaker"]() as session:
        accounts = await accounts_to_watch(session)
    for account in accounts:
        await enqueue_sync(ctx["redis"], tenant_id=account.tenant_id, account_id=account.id)
    return len(accounts)
