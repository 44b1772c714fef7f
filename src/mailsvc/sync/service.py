"""Sync behaviour behind the API: queue a pass, report progress, list mailboxes."""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncSession

from mailsvc.account.service import AccountService
from mailsvc.errors import NotFoundError
from mailsvc.jobs import enqueue_sync
from mailsvc.kit.reads import ReadPool
from mailsvc.kit.resources import Resources
from mailsvc.sync import schemas
from mailsvc.sync.idle_status import idle_status, idle_statuses
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
        idle = _idle_out(await idle_status(self._redis, account_id))
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

    async def statuses(self, account_ids: Sequence[uuid.UUID]) -> list[schemas.SyncStatus]:
        """`status` of each of the tenant's accounts among `account_ids`, in their order,
        read in one statement and one Redis round trip."""
        progress = await self._sync.progress_of(account_ids)
        watched = await idle_statuses(self._redis, list(progress))
        return [
            schemas.SyncStatus.model_validate(
                {
                    "account_id": account_id,
                    "state": found.state,
                    "last_error": found.last_error,
                    "last_error_at": found.last_error_at,
                    "messages_total": found.messages_total,
                    "messages_synced": found.messages_synced,
                    "messages_indexed": found.messages_indexed,
                    "idle": _idle_out(watched.get(account_id)),
                    "mailboxes": json.loads(found.mailboxes),
                }
            )
            for account_id in account_ids
            if (found := progress.get(account_id)) is not None
        ]


def _idle_out(watched: dict[str, Any] | None) -> schemas.IdleStatus:
    """The API's view of an `idle_status` value (None: nobody watches the account)."""
    if watched is None:
        return schemas.IdleStatus(connected=False)
    since = watched.get("connected_at")
    return schemas.IdleStatus(
        connected=True,
        mailboxes=list(watched.get("mailboxes", [])),
        since=datetime.fromisoformat(since) if isinstance(since, str) else None,
    )
