"""Sending fixtures: a second mail user to write to, and an arq worker for retries."""

from __future__ import annotations

import asyncio
import secrets
import time
from typing import Any

import httpx
import pytest
from arq.connections import ArqRedis
from arq.constants import default_queue_name
from arq.worker import Worker
from fastapi import FastAPI

from mailsvc.outbox.dispatch import file_copy_job_function, send_job_function
from mailsvc.runtime import Runtime
from mailsvc.sync.engine import SyncEngine
from mailsvc.sync.tasks import sync_job_function
from tests.fixtures.dovecot import DovecotServer, TestMailUser
from tests.fixtures.mail import SyncTarget, register_account
from tests.fixtures.smtp_server import SmtpRelay
from tests.fixtures.waiting import eventually


@pytest.fixture
async def recipient(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    tenant_id: str,
    dovecot: DovecotServer,
    smtp_relay: SmtpRelay,
) -> SyncTarget:
    """Another user of the test Dovecot, registered as an account of the same tenant."""
    user: TestMailUser = dovecot.add_user(f"rcpt-{secrets.token_hex(6)}", secrets.token_urlsafe(12))
    account_id = await register_account(client, auth, dovecot, smtp_relay, user)
    return SyncTarget(tenant_id, account_id, user)


async def run_send_jobs(app: FastAPI, engine: SyncEngine, *, within: float = 60) -> None:
    """Run send (and sync) jobs until none is due in the next two seconds.

    Not burst mode: a send scheduled for later stays in the queue and would keep a
    burst worker polling until it is due.
    """
    state: Runtime = app.state.mailsvc
    await state.outbox.wait_idle()
    ctx: dict[str, Any] = {
        "outbox_sender": state.outbox.sender,
        "sessionmaker": state.sessionmaker,
        "sync_engine": engine,
    }
    pool = ArqRedis(connection_pool=state.redis.connection_pool)
    worker = Worker(
        functions=[send_job_function(), file_copy_job_function(), sync_job_function()],
        redis_pool=pool,
        handle_signals=False,
        poll_delay=0.05,
        ctx=ctx,
    )
    running = asyncio.create_task(worker.main())

    async def nothing_due_soon() -> bool:
        soon_ms = (time.time() + 2) * 1000
        return await pool.zcount(default_queue_name, 0, soon_ms) == 0

    try:
        await eventually(nothing_due_soon, within=within, what="send jobs done", interval=0.1)
    finally:
        # Not `worker.close()`: it would close the app's shared Redis pool.
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
