"""SQL of webhooks and their deliveries, and the reads of the change log they need."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from sqlalchemy import and_, func, select, text, tuple_
from sqlalchemy.ext.asyncio import AsyncSession

from mailsvc.event.repository import CHANGES_CHANNEL, FeedPosition
from mailsvc.kit.ids import uuid7
from mailsvc.kit.repository import TenantRepository, cross_tenant
from mailsvc.models import Change, Webhook, WebhookDelivery
from mailsvc.models.webhook_delivery import UNFINISHED

# As in the change feed: transactions older than every one still running.
_HORIZON = text("(pg_snapshot_xmin(pg_current_snapshot())::text)::bigint")


class WebhookRepository(TenantRepository):
    """One tenant's webhooks."""

    async def add(self, webhook: Webhook) -> Webhook:
        await self.scoped.add(webhook)
        await self.session.refresh(webhook)
        return webhook

    async def get(self, webhook_id: uuid.UUID, *, for_update: bool = False) -> Webhook | None:
        statement = self.scoped.select(Webhook).where(Webhook.id == webhook_id)
        if for_update:
            statement = statement.with_for_update()
        found: Webhook | None = await self.session.scalar(statement)
        return found

    async def page(self, *, after: uuid.UUID | None, limit: int) -> Sequence[Webhook]:
        """Up to `limit` webhooks in id (creation) order, after the given id."""
        statement = self.scoped.select(Webhook)
        if after is not None:
            statement = statement.where(Webhook.id > after)
        result = await self.session.scalars(statement.order_by(Webhook.id).limit(limit))
        return result.all()

    async def delete(self, webhook_id: uuid.UUID) -> bool:
        """Delete the webhook (its deliveries cascade); False when there was none."""
        deleted = await self.session.scalar(
            self.scoped.delete(Webhook).where(Webhook.id == webhook_id).returning(Webhook.id)
        )
        return deleted is not None

    async def all_in_tenant(self) -> Sequence[Webhook]:
        result = await self.session.scalars(self.scoped.select(Webhook).order_by(Webhook.id))
        return result.all()

    async def active_ids(self) -> list[uuid.UUID]:
        result = await self.session.scalars(
            self.scoped.select(Webhook.id).where(Webhook.active).order_by(Webhook.id)
        )
        return list(result.all())

    async def lock_for_fanout(self, webhook_id: uuid.UUID) -> Webhook | None:
        """The active webhook, locked until commit; None if another process holds it
        (or it is inactive or gone). Several workers can fan out: each skips the
        webhooks another one is on."""
        found: Webhook | None = await self.session.scalar(
            self.scoped.select(Webhook)
            .where(Webhook.id == webhook_id, Webhook.active)
            .with_for_update(skip_locked=True)
        )
        return found

    async def set_cursor(self, webhook_id: uuid.UUID, position: FeedPosition) -> None:
        await self._set(webhook_id, cursor_txid=position.txid, cursor_id=position.id)

    async def count_given_up(self, webhook_id: uuid.UUID) -> int:
        """One more delivery given up in a row; the new count."""
        count: int | None = await self.session.scalar(
            self.scoped.update(Webhook)
            .where(Webhook.id == webhook_id)
            .values(failure_count=Webhook.failure_count + 1)
            .returning(Webhook.failure_count)
        )
        return count or 0

    async def reset_failures(self, webhook_id: uuid.UUID) -> None:
        """A delivery succeeded. Writes (and locks) the row only when there is a count."""
        await self.session.execute(
            self.scoped.update(Webhook)
            .where(Webhook.id == webhook_id, Webhook.failure_count != 0)
            .values(failure_count=0)
        )

    async def wake_fanout(self) -> None:
        """Have the fan-out look at this tenant once the transaction commits (a webhook
        was re-activated: its waiting events go out without waiting for news)."""
        await self.session.execute(select(func.pg_notify(CHANGES_CHANNEL, self.tenant_id)))

    async def disable(self, webhook_id: uuid.UUID, reason: str) -> None:
        await self._set(webhook_id, active=False, disabled_reason=reason)

    async def _set(self, webhook_id: uuid.UUID, **values: Any) -> None:
        await self.session.execute(
            self.scoped.update(Webhook).where(Webhook.id == webhook_id).values(**values)
        )


class DeliveryRepository(TenantRepository):
    """One tenant's webhook deliveries, and the changes they carry."""

    async def add_for_changes(self, webhook_id: uuid.UUID, changes: Sequence[Change]) -> None:
        """A pending delivery per change; changes that have one already are skipped."""
        if not changes:
            return
        rows = [
            {
                "id": uuid7(),
                "webhook_id": webhook_id,
                "change_id": change.id,
                "account_id": change.account_id,
                "change_txid": change.txid,
                "change_seq": change.seq,
                "event_type": change.type,
            }
            for change in changes
        ]
        await self.session.execute(
            self.scoped.insert(WebhookDelivery, rows).on_conflict_do_nothing(
                index_elements=["tenant_id", "webhook_id", "change_id"]
            )
        )

    async def held_back(self, after: FeedPosition) -> bool:
        """Whether a committed change after `after` is held back by an older
        transaction still running (the feed will return it once that one ends)."""
        held = self.scoped.select(Change.id).where(
            tuple_(Change.txid, Change.id) > tuple_(after.txid, after.id),
            Change.txid >= _HORIZON,
        )
        found: bool | None = await self.session.scalar(select(held.exists()))
        return bool(found)

    async def change(self, change_id: int) -> Change | None:
        found: Change | None = await self.session.scalar(
            self.scoped.select(Change).where(Change.id == change_id)
        )
        return found

    async def next_unfinished(
        self, webhook_id: uuid.UUID, account_id: uuid.UUID
    ) -> tuple[WebhookDelivery, bool] | None:
        """The account's oldest unfinished delivery to this webhook, locked, and whether
        it is due (pending and its time has come, or `delivering` past its lease).

        Not SKIP LOCKED: a second job waits for the first one's short transaction and
        then sees the delivery taken, so it can never jump ahead to a later one.
        """
        row = (
            await self.session.execute(
                self.scoped.select(WebhookDelivery, WebhookDelivery.next_attempt_at <= func.now())
                .where(
                    WebhookDelivery.webhook_id == webhook_id,
                    WebhookDelivery.account_id == account_id,
                    WebhookDelivery.status.in_(UNFINISHED),
                )
                .order_by(WebhookDelivery.change_seq)
                .limit(1)
                .with_for_update(of=WebhookDelivery)
            )
        ).first()
        return None if row is None else (row[0], bool(row[1]))

    async def claim(self, delivery_id: uuid.UUID, *, lease: timedelta) -> WebhookDelivery:
        """Take the delivery for one attempt: `delivering` under a lease, attempts + 1."""
        claimed: WebhookDelivery = (
            await self.session.scalars(
                self.scoped.update(WebhookDelivery)
                .where(WebhookDelivery.id == delivery_id)
                .values(
                    status="delivering",
                    attempts=WebhookDelivery.attempts + 1,
                    next_attempt_at=func.now() + lease,
                )
                .returning(WebhookDelivery)
            )
        ).one()
        return claimed

    async def finish(
        self, delivery_id: uuid.UUID, *, attempt: int, values: dict[str, Any]
    ) -> WebhookDelivery | None:
        """Record an attempt's outcome if the delivery is still this attempt's; None when
        its lease ran out and another worker took it over."""
        finished: WebhookDelivery | None = await self.session.scalar(
            self.scoped.update(WebhookDelivery)
            .where(
                WebhookDelivery.id == delivery_id,
                WebhookDelivery.status == "delivering",
                WebhookDelivery.attempts == attempt,
            )
            .values(**values)
            .returning(WebhookDelivery)
        )
        return finished

    async def give_up(self, delivery_id: uuid.UUID, error: str) -> None:
        await self.session.execute(
            self.scoped.update(WebhookDelivery)
            .where(WebhookDelivery.id == delivery_id)
            .values(status="failed", last_error=error)
        )

    async def unfinished_accounts(self, webhook_id: uuid.UUID) -> list[uuid.UUID]:
        """Accounts with deliveries to this webhook still to go."""
        result = await self.session.scalars(
            self.scoped.select(WebhookDelivery.account_id)
            .where(
                WebhookDelivery.webhook_id == webhook_id,
                WebhookDelivery.status.in_(UNFINISHED),
            )
            .distinct()
        )
        return list(result.all())

    async def page(
        self,
        webhook_id: uuid.UUID,
        *,
        status: str | None,
        before: uuid.UUID | None,
        limit: int,
    ) -> Sequence[WebhookDelivery]:
        """Newest first (ids are time-ordered), keyset-paged on the id."""
        statement = self.scoped.select(WebhookDelivery).where(
            WebhookDelivery.webhook_id == webhook_id
        )
        if status is not None:
            statement = statement.where(WebhookDelivery.status == status)
        if before is not None:
            statement = statement.where(WebhookDelivery.id < before)
        result = await self.session.scalars(
            statement.order_by(WebhookDelivery.id.desc()).limit(limit)
        )
        return result.all()


@cross_tenant(reason="the fan-out's safety net looks for every tenant with webhooks to serve")
async def tenants_with_active_webhooks(session: AsyncSession) -> list[str]:
    """Operator use only (the fan-out's safety net spans every tenant); never behind an
    endpoint."""
    result = await session.scalars(select(Webhook.tenant_id).where(Webhook.active).distinct())
    return sorted(result.all())


@cross_tenant(reason="the sweep finds overdue deliveries in every tenant; ids only")
async def due_deliveries(
    session: AsyncSession, *, overdue_by: timedelta, limit: int
) -> list[tuple[str, uuid.UUID, uuid.UUID]]:
    """(tenant, webhook, account) with a delivery overdue by `overdue_by`: pending past
    its time, or `delivering` past its lease (its worker died). Active webhooks only.

    The sweep's only cross-tenant read: it returns ids, and each delivery job then
    runs in its tenant's scope.
    """
    rows = await session.execute(
        select(WebhookDelivery.tenant_id, WebhookDelivery.webhook_id, WebhookDelivery.account_id)
        .join(
            Webhook,
            and_(
                Webhook.tenant_id == WebhookDelivery.tenant_id,
                Webhook.id == WebhookDelivery.webhook_id,
            ),
        )
        .where(
            WebhookDelivery.status.in_(UNFINISHED),
            WebhookDelivery.next_attempt_at <= func.now() - overdue_by,
            Webhook.active,
        )
        .distinct()
        .limit(limit)
    )
    return [(tenant_id, webhook_id, account_id) for tenant_id, webhook_id, account_id in rows]


@cross_tenant(reason="key rotation walks every tenant")
async def tenants_with_webhooks(session: AsyncSession) -> list[str]:
    """Operator use only (key rotation walks every tenant); never behind an endpoint."""
    result = await session.scalars(select(Webhook.tenant_id).distinct())
    return sorted(result.all())
