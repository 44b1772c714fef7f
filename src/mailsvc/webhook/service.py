"""Webhook behaviour for the API: register, read, change, delete, test, list deliveries."""

from __future__ import annotations

import json
import time
import uuid

from sqlalchemy.ext.asyncio import AsyncSession

from mailsvc.errors import FieldError, NotFoundError, UnprocessableError
from mailsvc.event.repository import ChangeRepository, FeedPosition
from mailsvc.event.schemas import encode_position
from mailsvc.kit.db import after_commit, utcnow
from mailsvc.kit.ids import uuid7
from mailsvc.kit.pagination import encode_cursor, read_cursor
from mailsvc.kit.resources import Resources
from mailsvc.models import Webhook, WebhookDelivery
from mailsvc.webhook import schemas
from mailsvc.webhook.client import WebhookClient
from mailsvc.webhook.credentials import open_secret, seal_secret
from mailsvc.webhook.queue import enqueue_delivery
from mailsvc.webhook.repository import DeliveryRepository, WebhookRepository
from mailsvc.webhook.signing import generate_secret, signed_headers
from mailsvc.webhook.target import TargetNotAllowedError, ensure_target_allowed

TEST_EVENT_TYPE = "webhook.test"


def to_out(webhook: Webhook) -> schemas.WebhookOut:
    """The API form of a webhook (never its secret)."""
    return schemas.WebhookOut(
        id=webhook.id,
        url=webhook.url,
        event_types=list(webhook.event_types),
        description=webhook.description,
        active=webhook.active,
        disabled_reason=webhook.disabled_reason,
        failure_count=webhook.failure_count,
        created_at=webhook.created_at,
        updated_at=webhook.updated_at,
    )


def delivery_out(delivery: WebhookDelivery) -> schemas.DeliveryOut:
    """The API form of a delivery; `next_attempt_at` only while it waits (not the lease)."""
    return schemas.DeliveryOut(
        id=delivery.id,
        event_id=encode_position(FeedPosition(delivery.change_txid, delivery.change_id)),
        event_type=delivery.event_type,
        account_id=delivery.account_id,
        seq=delivery.change_seq,
        change_id=delivery.change_id,
        status=delivery.status,  # type: ignore[arg-type]  # guarded by a check constraint
        attempts=delivery.attempts,
        next_attempt_at=delivery.next_attempt_at if delivery.status == "pending" else None,
        last_status_code=delivery.last_status_code,
        last_error=delivery.last_error,
        last_duration_ms=delivery.last_duration_ms,
        delivered_at=delivery.delivered_at,
        created_at=delivery.created_at,
    )


def _after_id(cursor: str | None) -> uuid.UUID | None:
    return read_cursor(cursor, lambda position: uuid.UUID(str(position["after"])))


class WebhookService:
    """Webhooks of one tenant. Never commits: the caller owns the transaction."""

    def __init__(self, session: AsyncSession, tenant_id: str, resources: Resources) -> None:
        self._session = session
        self._tenant_id = tenant_id
        self._resources = resources
        self._webhooks = WebhookRepository(session, tenant_id)
        self._deliveries = DeliveryRepository(session, tenant_id)

    async def get(self, webhook_id: uuid.UUID, *, for_update: bool = False) -> Webhook:
        """The tenant's webhook; 404 `webhook_not_found` for any other id."""
        webhook = await self._webhooks.get(webhook_id, for_update=for_update)
        if webhook is None:
            raise NotFoundError("webhook not found", code="webhook_not_found")
        return webhook

    async def page(self, *, cursor: str | None, limit: int) -> schemas.WebhookPage:
        """One page of the tenant's webhooks, oldest first."""
        rows = await self._webhooks.page(after=_after_id(cursor), limit=limit + 1)
        next_cursor = (
            encode_cursor({"after": str(rows[limit - 1].id)}) if len(rows) > limit else None
        )
        return schemas.WebhookPage(
            items=[to_out(row) for row in rows[:limit]], next_cursor=next_cursor
        )

    async def create(self, body: schemas.WebhookCreate) -> schemas.WebhookCreated:
        """A new webhook, starting at the end of the tenant's feed (no history)."""
        await self._check_url(body.url)
        webhook_id = uuid7()
        secret = generate_secret()
        start = await ChangeRepository(self._session, self._tenant_id).head()
        webhook = await self._webhooks.add(
            Webhook(
                id=webhook_id,
                url=body.url,
                event_types=body.event_types,
                description=body.description,
                active=body.active,
                secret=seal_secret(
                    self._resources.secrets,
                    tenant_id=self._tenant_id,
                    webhook_id=webhook_id,
                    secret=secret,
                ),
                cursor_txid=start.txid,
                cursor_id=start.id,
            )
        )
        return schemas.WebhookCreated(**to_out(webhook).model_dump(), secret=secret)

    async def update(self, webhook_id: uuid.UUID, body: schemas.WebhookUpdate) -> Webhook:
        """Replace the settings; re-activating clears the failure count and the reason."""
        webhook = await self.get(webhook_id, for_update=True)
        await self._check_url(body.url)
        reactivated = body.active and not webhook.active
        webhook.url = body.url
        webhook.event_types = body.event_types
        webhook.description = body.description
        webhook.active = body.active
        if reactivated:
            webhook.failure_count = 0
            webhook.disabled_reason = None
        await self._session.flush()
        await self._session.refresh(webhook)
        if reactivated:
            await self._resume(webhook_id)
        return webhook

    async def delete(self, webhook_id: uuid.UUID) -> None:
        """Delete the webhook; its deliveries go with it and its jobs find nothing."""
        if not await self._webhooks.delete(webhook_id):
            raise NotFoundError("webhook not found", code="webhook_not_found")

    async def deliveries(
        self, webhook_id: uuid.UUID, *, status: str | None, cursor: str | None, limit: int
    ) -> schemas.DeliveryPage:
        """One page of the webhook's deliveries, newest first."""
        await self.get(webhook_id)
        rows = await self._deliveries.page(
            webhook_id, status=status, before=_after_id(cursor), limit=limit + 1
        )
        next_cursor = (
            encode_cursor({"after": str(rows[limit - 1].id)}) if len(rows) > limit else None
        )
        return schemas.DeliveryPage(
            items=[delivery_out(row) for row in rows[:limit]], next_cursor=next_cursor
        )

    async def send_test(self, webhook_id: uuid.UUID) -> schemas.WebhookTestResult:
        """POST a signed `webhook.test` event now and report the receiver's answer."""
        webhook = await self.get(webhook_id)
        delivery_id = f"test_{uuid7()}"
        body = json.dumps(
            {
                "id": delivery_id,
                "type": TEST_EVENT_TYPE,
                "created_at": utcnow().isoformat(),
                "data": {"webhook_id": str(webhook.id)},
            },
            separators=(",", ":"),
        ).encode()
        settings = self._resources.settings
        try:
            await ensure_target_allowed(webhook.url, allow_private=settings.allow_private_hosts)
        except TargetNotAllowedError as exc:
            return schemas.WebhookTestResult(
                delivered=False,
                status_code=None,
                error=str(exc),
                delivery_id=delivery_id,
                duration_ms=None,
            )
        headers = signed_headers(
            open_secret(self._resources.secrets, webhook),
            webhook_id=delivery_id,
            timestamp=int(time.time()),
            body=body,
            event_type=TEST_EVENT_TYPE,
        )
        client = WebhookClient(timeout_seconds=settings.webhook_timeout_seconds)
        try:
            result = await client.post(webhook.url, body=body, headers=headers)
        finally:
            await client.aclose()
        return schemas.WebhookTestResult(
            delivered=result.ok,
            status_code=result.status_code,
            error=result.error,
            delivery_id=delivery_id,
            duration_ms=result.duration_ms,
        )

    async def _check_url(self, url: str) -> None:
        try:
            await ensure_target_allowed(
                url, allow_private=self._resources.settings.allow_private_hosts
            )
        except TargetNotAllowedError as exc:
            raise UnprocessableError(
                f"the webhook URL is not allowed: {exc}",
                code="webhook_url_not_allowed",
                errors=[FieldError(field="body.url", message=str(exc))],
            ) from exc

    async def _resume(self, webhook_id: uuid.UUID) -> None:
        """After commit, jobs for the deliveries that waited, and a fan-out pass for
        the events that came meanwhile."""
        await self._webhooks.wake_fanout()
        accounts = await self._deliveries.unfinished_accounts(webhook_id)
        arq, tenant_id = self._resources.arq, self._tenant_id

        async def enqueue() -> None:
            for account_id in accounts:
                await enqueue_delivery(
                    arq,
                    tenant_id=tenant_id,
                    webhook_id=webhook_id,
                    account_id=account_id,
                    marker=f"resume:{uuid7()}",
                )

        after_commit(self._session, enqueue)
