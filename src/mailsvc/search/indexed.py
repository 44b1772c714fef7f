"""`account.indexed`: the event that says an account's first mirror is fully searchable.

A first mirror makes messages listable as they are stored; their search documents
follow in the worker (`search/indexer.py`). Applications that want to search a new
account wait for this event. It is sent once per account, when all of these hold:

- the first mirror is complete: every selectable mailbox of the account has finished
  a sync pass (or failed in one: the sync retries it on every pass, and the account
  should not wait forever for a mailbox its server cannot serve);
- nothing of the account is queued for indexing;
- it was not sent before (`accounts.indexed_at`).

Whichever of the two finishes last sends it: the indexer, after each batch, for the
accounts in it; the sync engine, after a pass. Both may check at the same moment:
the UPDATE of `indexed_at` lets exactly one of them append the event.
"""

from __future__ import annotations

import uuid

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from mailsvc.event.repository import ChangeRepository
from mailsvc.search.queue_repository import SearchQueueRepository

log = structlog.get_logger("mailsvc.search")

ACCOUNT_INDEXED = "account.indexed"


async def announce_if_indexed(session: AsyncSession, tenant_id: str, account_id: uuid.UUID) -> bool:
    """Append `account.indexed` in the caller's transaction when it is due (see the
    module docstring); True when it was appended.

    Cheap when there is nothing to say: one primary-key read once the account has
    been announced, so callers may call it after every batch or pass.
    """
    queue = SearchQueueRepository(session, tenant_id)
    if not await queue.awaits_announcement(account_id):
        return False
    if await queue.has_pending(account_id=account_id):
        return False
    messages = await queue.mark_indexed(account_id)
    if messages is None:
        return False  # another caller announced it first
    await ChangeRepository(session, tenant_id).append(
        account_id,
        ACCOUNT_INDEXED,
        {"account_id": str(account_id), "messages_indexed": messages},
    )
    log.info("search.account_indexed", account_id=str(account_id), messages=messages)
    return True
