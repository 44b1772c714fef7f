"""Delivering a webhook's events of one account: in order, signed, until each is done.

Runs as the arq job `deliver_webhook(tenant, webhook, account)`. Each step takes the
account's OLDEST unfinished delivery (by `change_seq`) under a row lock, so later
events wait until it succeeded or was given up: a receiver sees each account's events
in order. Accounts are independent; a slow account never holds up another.

    pending ── claim ──> delivering ── 2xx ──────────────────────> succeeded
       ^                     │ timeout, connection error, non-2xx
       └──── backoff ────────┤ (attempts < WEBHOOK_MAX_ATTEMPTS)
                             └── at the last attempt ─────────────> failed
                                 (webhook failure_count + 1; disabled at
                                  WEBHOOK_DISABLE_AFTER_FAILURES)

A claim sets a lease (`next_attempt_at`): a delivery still `delivering` past it
belongs to a worker that died, and the next job (the sweep's) attempts it again with
the same `Webhook-Id`, so a receiver may see a delivery twice and dedupes on the id.
An outcome is recorded only while the claim is still this attempt's.
"""

from __future__ import annotations

import random
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

import structlog
from arq.connections import ArqRedis
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from mailsvc.config import Settings
from mailsvc.event.schemas import event_from_change, event_json
from mailsvc.kit.crypto import SecretBox, SecretDecryptionError
from mailsvc.kit.db import utcnow
from mailsvc.kit.ids import uuid7
from mailsvc.kit.outage import retry_while_database_unreachable
from mailsvc.ops.metrics import count_webhook_dropped, observe_webhook_attempt
from mailsvc.webhook.client import PostResult, WebhookClient
from mailsvc.webhook.credentials import open_secret
from mailsvc.webhook.queue import enqueue_delivery, enqueue_retry
from mailsvc.webhook.repository import DeliveryRepository, WebhookRepository
from mailsvc.webhook.signing import signed_headers
from mailsvc.webhook.target import TargetNotAllowedError, ensure_target_allowed

log = structlog.get_logger("mailsvc.webhook")

# A job hands over to a fresh one after this long, so no job runs for ever.
JOB_BUDGET_SECONDS = 60.0
# Beyond the request timeout, what a claim leaves for recording the outcome.
_LEASE_MARGIN_SECONDS = 5.0


def backoff(attempts: int, settings: Settings) -> timedelta:
    """Exponential, capped, with +-20% jitter so retries of many deliveries spread out."""
    base = settings.webhook_retry_base_seconds * 2 ** max(attempts - 1, 0)
    seconds = min(base, settings.webhook_retry_max_seconds) * random.uniform(0.8, 1.2)
    return timedelta(seconds=seconds)


def lease_for(settings: Settings) -> timedelta:
    """How long a claimed delivery is this worker's: the whole request, and a margin."""
    return timedelta(seconds=settings.webhook_timeout_seconds + _LEASE_MARGIN_SECONDS)


@dataclass(frozen=True, slots=True)
class _Attempt:
    """A claimed delivery and everything its request needs."""

    delivery_id: uuid.UUID
    attempt: int
    url: str
    secret: str
    body: bytes
    event_type: str
    # When the event's transaction wrote it: a success's lag is measured from here.
    event_at: datetime
    # When this worker's claim ends (`time.monotonic()`, a margin short of the lease).
    lease_ends: float


@dataclass(frozen=True, slots=True)
class _Later:
    """The next delivery is waiting for a retry at `at`."""

    delivery_id: uuid.UUID
    attempts: int
    at: datetime


_Step = _Attempt | _Later | None


class WebhookDeliverer:
    """Runs delivery jobs in the worker."""

    def __init__(
        self,
        *,
        sessionmaker: async_sessionmaker[AsyncSession],
        secrets: SecretBox,
        settings: Settings,
        arq: ArqRedis,
        client: WebhookClient,
    ) -> None:
        self._sessionmaker = sessionmaker
        self._secrets = secrets
        self._settings = settings
        self._arq = arq
        self._client = client

    async def run(self, tenant_id: str, webhook_id: uuid.UUID, account_id: uuid.UUID) -> int:
        """Deliver the account's due deliveries one after the other; how many attempted."""
        deadline = time.monotonic() + JOB_BUDGET_SECONDS
        attempted = 0
        while True:
            step = await self._next(tenant_id, webhook_id, account_id)
            if step is None:
                return attempted
            if isinstance(step, _Later):
                await enqueue_retry(
                    self._arq,
                    tenant_id=tenant_id,
                    webhook_id=webhook_id,
                    account_id=account_id,
                    delivery_id=step.delivery_id,
                    attempts=step.attempts,
                    at=step.at,
                )
                return attempted
            result = await self._post(step)
            attempted += 1
            await self._record(tenant_id, webhook_id, step, result)
            if time.monotonic() > deadline:
                await enqueue_delivery(
                    self._arq,
                    tenant_id=tenant_id,
                    webhook_id=webhook_id,
                    account_id=account_id,
                    marker=f"next:{uuid7()}",
                )
                return attempted

    async def _next(self, tenant_id: str, webhook_id: uuid.UUID, account_id: uuid.UUID) -> _Step:
        """Claim the account's next delivery if it is due (None: nothing to do now)."""
        async with self._sessionmaker() as session, session.begin():
            webhooks = WebhookRepository(session, tenant_id)
            deliveries = DeliveryRepository(session, tenant_id)
            webhook = await webhooks.get(webhook_id)
            if webhook is None or not webhook.active:
                return None  # the deliveries wait for it to be active again
            while True:
                found = await deliveries.next_unfinished(webhook_id, account_id)
                if found is None:
                    return None
                delivery, due = found
                if not due:
                    if delivery.status == "delivering":
                        return None  # another job's attempt, under its lease
                    return _Later(delivery.id, delivery.attempts, delivery.next_attempt_at)
                change = await deliveries.change(delivery.change_id)
                if change is None:
                    await deliveries.give_up(
                        delivery.id, "the event left the change log (CHANGE_RETENTION_DAYS)"
                    )
                    count_webhook_dropped()
                    continue
                try:
                    secret = open_secret(self._secrets, webhook)
                except SecretDecryptionError:
                    reason = "the signing secret cannot be decrypted (is its ENCRYPTION_KEY gone?)"
                    await webhooks.disable(webhook_id, reason)
                    log.error("webhook.disabled", webhook_id=str(webhook_id), reason=reason)
                    return None
                try:
                    body = event_json(event_from_change(change))
                except ValueError as exc:  # a change the event schemas do not describe
                    await deliveries.give_up(delivery.id, f"the event cannot be encoded: {exc}")
                    count_webhook_dropped()
                    continue
                lease = lease_for(self._settings)
                # Measured before the claim, and a tenth short: clocks of hosts differ.
                lease_ends = time.monotonic() + lease.total_seconds() * 0.9
                claimed = await deliveries.claim(delivery.id, lease=lease)
                return _Attempt(
                    delivery_id=claimed.id,
                    attempt=claimed.attempts,
                    url=webhook.url,
                    secret=secret,
                    body=body,
                    event_type=claimed.event_type,
                    event_at=change.created_at,
                    lease_ends=lease_ends,
                )

    async def _post(self, attempt: _Attempt) -> PostResult:
        try:
            # Again before every request: the name may resolve elsewhere by now.
            await ensure_target_allowed(
                attempt.url, allow_private=self._settings.allow_private_hosts
            )
        except TargetNotAllowedError as exc:
            return PostResult(None, str(exc))
        headers = signed_headers(
            attempt.secret,
            webhook_id=str(attempt.delivery_id),
            timestamp=int(time.time()),
            body=attempt.body,
            event_type=attempt.event_type,
        )
        return await self._client.post(attempt.url, body=attempt.body, headers=headers)

    async def _record(
        self, tenant_id: str, webhook_id: uuid.UUID, attempt: _Attempt, result: PostResult
    ) -> None:
        settings = self._settings
        values: dict[str, object] = {
            "last_status_code": result.status_code,
            "last_error": result.error,
            "last_duration_ms": result.duration_ms,
        }
        given_up = False
        now = utcnow()
        if result.ok:
            values.update(status="succeeded", delivered_at=now)
        elif attempt.attempt >= settings.webhook_max_attempts:
            values["status"] = "failed"
            given_up = True
        else:
            values.update(
                status="pending", next_attempt_at=now + backoff(attempt.attempt, settings)
            )

        async def finish() -> bool:
            async with self._sessionmaker() as session, session.begin():
                webhooks = WebhookRepository(session, tenant_id)
                finished = await DeliveryRepository(session, tenant_id).finish(
                    attempt.delivery_id, attempt=attempt.attempt, values=values
                )
                if finished is None:
                    return False
                if result.ok:
                    await webhooks.reset_failures(webhook_id)
                elif given_up:
                    count = await webhooks.count_given_up(webhook_id)
                    limit = settings.webhook_disable_after_failures
                    if limit and count >= limit:
                        reason = (
                            f"disabled after {count} deliveries in a row failed "
                            f"{settings.webhook_max_attempts} attempts each; last error: "
                            f"{result.error}"
                        )
                        await webhooks.disable(webhook_id, reason)
                        log.warning("webhook.disabled", webhook_id=str(webhook_id), failures=count)
                return True

        # The receiver may have the event: if PostgreSQL is restarting now, waiting for
        # it (until the claim's lease ends; `finish` is fenced by the attempt number)
        # keeps the delivery from being retaken and posted a second time.
        if not await retry_while_database_unreachable(
            finish, until=attempt.lease_ends, what="webhook.record"
        ):
            log.info("webhook.lease_lost", delivery_id=str(attempt.delivery_id))
            return
        # Counted once recorded: an attempt whose lease ran out is not this one's to count.
        observe_webhook_attempt(
            outcome="retry" if values["status"] == "pending" else str(values["status"]),
            lag_seconds=(now - attempt.event_at).total_seconds() if result.ok else None,
        )
        log.info(
            "webhook.attempt",
            webhook_id=str(webhook_id),
            delivery_id=str(attempt.delivery_id),
            attempt=attempt.attempt,
            status=values["status"],
            status_code=result.status_code,
            duration_ms=result.duration_ms,
            error=result.error,
        )
