"""Sync behaviour behind the API: queue a pass, report progress, list mailboxes."""

from __future__ import annotations

import json
import uuid
from datetime import datetime

from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncSession

from mailsvc.account.service import AccountService
from mailsvc.errors import NotFoundError
from mailsvc.jobs import enqueue_sync
from mailsvc.kit.reads import ReadPool
from mailsvc.kit.resources import Resources
from mailsvc.sync import schemas
from mailsvc.sync.idle_status import idle_status
from mailsvc.sync.read_repository import Progress, SyncReads


class SyncService:
    def __init__(self, session: AsyncSession, tenant_id: str, resources: Resources) -> None:
        self._session = session
        self._tenant_id = tenant_id
        self._resources = resources
        self._accounts = AccountService(session, tenant_id, resources)

    async def request(self, account_id: uuid.UUID, *, full: bool) -> schemas.SyncRequested:
        account = await self._accounts.get(account_id)
        enqueued = await enqueue_sync(
            self._resources.arq, tenant_id=self._tenant_id, account_id=account.id, full=full
        )
        return schemas.SyncRequested(
            account_id=account.id,
            job_id=enqueued.job_id,
            queued=enqueued.queued,
            full=full,
            status_url=f"/api/sync/status/{account.id}",
        )


class SyncProgress:
    """Where one tenant's accounts stand, read on the raw pool (kit/reads.py)."""

    def __init__(self, reads: ReadPool, tenant_id: str, *, redis: Redis) -> None:
        self._sync = SyncReads(reads, tenant_id)
        self._redis = redis

    async def _progress(self, account_id: uuid.UUID) -> Progress:
        progress = await self._sync.progress(account_id)
        if progress is None:
            raise NotFoundError("account not found", code="account_not_found")
        return progress

    async def mailboxes(self, account_id: uuid.UUID) -> bytes:
        """A `MailboxList` as its JSON body."""
        progress = await self._progress(account_id)
        return f'{{"items":{progress.mailboxes}}}'.encode()

    async def status(self, account_id: uuid.UUID) -> bytes:
        """A `SyncStatus` as its JSON body: PostgreSQL's progress, Redis's IDLE state."""
        progress = await self._progress(account_id)
        watched = await idle_status(self._redis, account_id)
        idle = schemas.IdleStatus(connected=False)
        if watched is not None:
            since = watched.get("connected_at")
            idle = schemas.IdleStatus(
                connected=True,
                mailboxes=list(watched.get("mailboxes", [])),
                since=datetime.fromisoformat(since) if isinstance(since, str) else None,
            )
        fields = ",".join(
            (
                f'"account_id":"{account_id}"',
                f'"state":{json.dumps(progress.state)}',
                f'"last_error":{json.dumps(progress.last_error)}',
                f'"last_error_at":{json.dumps(progress.last_error_at)}',
                f'"messages_total":{progress.messages_total}',
                f'"messages_synced":{progress.messages_synced}',
                f'"messages_indexed":{progress.messages_indexed}',
                f'"idle":{idle.model_dump_json()}',
                f'"mailboxes":{progress.mailboxes}',
            )
        )
        return f"{{{fields}}}".encode()
