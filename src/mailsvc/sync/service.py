"""Sync behaviour behind the API: queue a pass, report progress, list mailboxes."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from mailsvc.account.service import AccountService
from mailsvc.jobs import enqueue_sync
from mailsvc.kit.resources import Resources
from mailsvc.mirror.repository import MailboxRepository
from mailsvc.models import Mailbox
from mailsvc.search.queue_repository import SearchQueueRepository
from mailsvc.sync import schemas
from mailsvc.sync.idle_status import idle_status


def mailbox_out(mailbox: Mailbox, *, pending: int) -> schemas.MailboxOut:
    """The mailbox with its progress; `pending`: its stored messages not yet indexed."""
    return schemas.MailboxOut(
        id=mailbox.id,
        name=mailbox.name,
        delimiter=mailbox.delimiter,
        role=mailbox.special_use,  # type: ignore[arg-type]  # check constraint
        attributes=list(mailbox.attributes),
        selectable=mailbox.selectable,
        messages_total=mailbox.messages_total,
        messages_unseen=mailbox.messages_unseen,
        messages_synced=mailbox.messages_synced,
        # The counter and the queue are read in different statements; never below 0.
        messages_indexed=max(0, mailbox.messages_synced - pending),
        sync_state=mailbox.sync_state,  # type: ignore[arg-type]  # check constraint
        last_synced_at=mailbox.last_synced_at,
        sync_error=mailbox.sync_error,
    )


def _inbox_first(mailboxes: list[Mailbox]) -> list[Mailbox]:
    return sorted(mailboxes, key=lambda m: (m.special_use != "inbox", m.name))


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

    async def _mailboxes_out(self, account_id: uuid.UUID) -> list[schemas.MailboxOut]:
        """Every mailbox of the account, INBOX first, with what is indexed of each
        (one query over the account's queued messages, not one per mailbox)."""
        rows = await MailboxRepository(self._session, self._tenant_id).for_account(account_id)
        pending = await SearchQueueRepository(self._session, self._tenant_id).pending_by_mailbox(
            account_id
        )
        return [mailbox_out(m, pending=pending.get(m.id, 0)) for m in _inbox_first(rows)]

    async def mailboxes(self, account_id: uuid.UUID) -> schemas.MailboxList:
        account = await self._accounts.get(account_id)
        return schemas.MailboxList(items=await self._mailboxes_out(account.id))

    async def status(self, account_id: uuid.UUID) -> schemas.SyncStatus:
        account = await self._accounts.get(account_id)
        mailboxes = await self._mailboxes_out(account.id)
        watched = await idle_status(self._resources.redis, account.id)
        idle = schemas.IdleStatus(connected=False)
        if watched is not None:
            since = watched.get("connected_at")
            idle = schemas.IdleStatus(
                connected=True,
                mailboxes=list(watched.get("mailboxes", [])),
                since=datetime.fromisoformat(since) if isinstance(since, str) else None,
            )
        selectable = [m for m in mailboxes if m.selectable]
        return schemas.SyncStatus(
            account_id=account.id,
            state=account.state,  # type: ignore[arg-type]  # check constraint
            last_error=account.last_error,
            last_error_at=account.last_error_at,
            messages_total=sum(m.messages_total for m in selectable),
            messages_synced=sum(m.messages_synced for m in selectable),
            messages_indexed=sum(m.messages_indexed for m in selectable),
            idle=idle,
            mailboxes=mailboxes,
        )
