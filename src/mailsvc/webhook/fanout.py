"""Fan-out: turning each tenant's new changes into delivery rows, one per webhook.

Runs as a long-lived task in every worker process, woken by the change listener
(`NOTIFY mailsvc_changes '<tenant>'`, sent when a change commits) and, as a safety
net, every `SAFETY_NET_SECONDS` for every tenant with an active webhook.

For each active webhook of a tenant with news, one transaction:

1. locks the webhook row (`FOR UPDATE SKIP LOCKED`: with several workers, one fans
   out a webhook at a time and the others pass by and come back shortly);
2. reads the feed after the webhook's cursor in batches (`ChangeRepository.after`);
3. inserts a pending delivery per change of a wanted type (`ON CONFLICT DO NOTHING`
   on (webhook, change)); the feed gives each account's changes in `seq` order
   (`ChangeRepository.append_many`), so an account's deliveries always form a prefix
   of its sequence;
4. moves the cursor past what it read.

A crash before the commit leaves the cursor where it was and the pass is repeated:
the unique key makes the repeat insert nothing twice. After the commit, a delivery
job is enqueued per (webhook, account) that got deliveries; if that enqueue is lost
(a crash right after the commit), the sweep finds the deliveries due.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Literal

import structlog
from arq.connections import ArqRedis
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from mailsvc.event.listener import ALL_TENANTS, ChangeListener
from mailsvc.event.repository import ChangeRepository, FeedPosition
from mailsvc.kit.tasks import cancel_and_wait
from mailsvc.models import Change, Webhook
from mailsvc.webhook.queue import enqueue_delivery
from mailsvc.webhook.repository import (
    DeliveryRepository,
    WebhookRepository,
    tenants_with_active_webhooks,
)

log = structlog.get_logger("mailsvc.webhook")

# Every tenant is looked at this often even without a notification.
SAFETY_NET_SECONDS = 30.0
# A tenant to come back to (a webhook locked elsewhere, a change held back behind an
# older transaction) is looked at again after this, doubling up to the cap.
_RETRY_SECONDS = 0.05
_RETRY_MAX_SECONDS = 2.0
_BATCH = 500
# Batches per transaction: the webhook row stays locked while they are read.
_BATCHES_PER_PASS = 10


Outcome = Literal["done", "more", "blocked"]


def _wanted(webhook: Webhook, change: Change) -> bool:
    return not webhook.event_types or change.type in webhook.event_types


class WebhookFanout:
    """The fan-out task of one worker process."""

    def __init__(
        self,
        *,
        sessionmaker: async_sessionmaker[AsyncSession],
        arq: ArqRedis,
        listener: ChangeListener,
    ) -> None:
        self._sessionmaker = sessionmaker
        self._arq = arq
        self._listener = listener
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Run the fan-out as a task of the running event loop (the listener must run)."""
        self._task = asyncio.create_task(self._run(), name="webhook-fanout")

    async def stop(self) -> None:
        """Stop the task; a pass cut short is repeated by the next worker (see above)."""
        if self._task is not None:
            await cancel_and_wait([self._task])

    async def _run(self) -> None:
        async with self._listener.subscribe(ALL_TENANTS) as wakeup:
            due: set[str] = set()
            everyone = True
            retry_delay = _RETRY_SECONDS
            while True:
                try:
                    if everyone:
                        due |= await self._tenants()
                    more, blocked = await self.fan_out(due)
                except Exception:
                    # The database is away, or a bug: never let the task die; try all again.
                    log.exception("webhook.fanout_failed")
                    await asyncio.sleep(_RETRY_MAX_SECONDS)
                    everyone = True
                    continue
                if more:
                    timeout = 0.0
                elif blocked:
                    timeout, retry_delay = retry_delay, min(retry_delay * 2, _RETRY_MAX_SECONDS)
                else:
                    timeout, retry_delay = SAFETY_NET_SECONDS, _RETRY_SECONDS
                news = await wakeup.wait(timeout)
                everyone = wakeup.missed or not (news or more or blocked)
                wakeup.missed = False
                due = news | more | blocked

    async def _tenants(self) -> set[str]:
        async with self._sessionmaker() as session:
            return set(await tenants_with_active_webhooks(session))

    async def fan_out(self, tenants: set[str]) -> tuple[set[str], set[str]]:
        """One pass over `tenants`: those with a backlog left, and those to come back to
        after a pause (a webhook locked elsewhere, a change held back)."""
        more: set[str] = set()
        blocked: set[str] = set()
        for tenant_id in sorted(tenants):
            async with self._sessionmaker() as session:
                webhook_ids = await WebhookRepository(session, tenant_id).active_ids()
            for webhook_id in webhook_ids:
                outcome = await self.fan_out_webhook(tenant_id, webhook_id)
                if outcome == "more":
                    more.add(tenant_id)
                elif outcome == "blocked":
                    blocked.add(tenant_id)
        return more, blocked

    async def fan_out_webhook(self, tenant_id: str, webhook_id: uuid.UUID) -> Outcome:
        """Create the webhook's deliveries for its new changes and enqueue their jobs.

        `more`: a backlog remains. `blocked`: the webhook was locked elsewhere, or a
        committed change is held back behind an older transaction still running.
        """
        accounts: set[uuid.UUID] = set()
        async with self._sessionmaker() as session, session.begin():
            webhook = await WebhookRepository(session, tenant_id).lock_for_fanout(webhook_id)
            if webhook is None:
                return "blocked"  # another worker is on it (or it just went inactive)
            start = position = FeedPosition(webhook.cursor_txid, webhook.cursor_id)
            feed = ChangeRepository(session, tenant_id)
            deliveries = DeliveryRepository(session, tenant_id)
            backlog = True
            for _ in range(_BATCHES_PER_PASS):
                changes = await feed.after(position, limit=_BATCH)
                if changes:
                    position = FeedPosition(changes[-1].txid, changes[-1].id)
                matching = [change for change in changes if _wanted(webhook, change)]
                if matching:
                    await deliveries.add_for_changes(webhook.id, matching)
                    accounts.update(change.account_id for change in matching)
                if len(changes) < _BATCH:
                    backlog = False
                    break
            if position != start:
                await WebhookRepository(session, tenant_id).set_cursor(webhook.id, position)
            held_back = not backlog and await deliveries.held_back(position)
        for account_id in accounts:
            await enqueue_delivery(
                self._arq,
                tenant_id=tenant_id,
                webhook_id=webhook_id,
                account_id=account_id,
                marker=f"after:{position.txid}-{position.id}",
            )
        if accounts:
            log.debug("webhook.fanned_out", webhook_id=str(webhook_id), accounts=len(accounts))
        return "more" if backlog else "blocked" if held_back else "done"
