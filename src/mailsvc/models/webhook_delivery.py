"""Webhook deliveries: one row per (webhook, change), retried until it succeeds or fails."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from mailsvc.kit.db import Base, TenantId, UuidPk, one_of, tenant_foreign_key

DELIVERY_STATUSES = ("pending", "delivering", "succeeded", "failed")
# Statuses of a delivery that may still be attempted.
UNFINISHED = ("pending", "delivering")


class WebhookDelivery(Base):
    """The delivery of one change to one webhook.

    The unique (webhook, change) pair makes fan-out idempotent: re-running it after
    a crash inserts nothing twice. A webhook's deliveries of one account go out one
    at a time in `change_seq` order. While `delivering`, `next_attempt_at` is the lease
    deadline after which another worker retries it (receivers dedupe on the delivery
    id, sent as `Webhook-Id`).
    """

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        UniqueConstraint("tenant_id", "webhook_id", "change_id"),
        CheckConstraint(one_of("status", DELIVERY_STATUSES), name="status"),
        tenant_foreign_key("webhook_id", "webhooks", ondelete="CASCADE"),
        Index("ix_webhook_deliveries_tenant_id_webhook_id_id", "tenant_id", "webhook_id", "id"),
        # The cross-tenant sweep for due deliveries; only in-flight rows are indexed.
        Index(
            "ix_webhook_deliveries_due",
            "next_attempt_at",
            postgresql_where=text("status IN ('pending', 'delivering')"),
        ),
        # The next delivery of a (webhook, account): its oldest unfinished one.
        Index(
            "ix_webhook_deliveries_next",
            "tenant_id",
            "webhook_id",
            "account_id",
            "change_seq",
            postgresql_where=text("status IN ('pending', 'delivering')"),
        ),
    )

    id: Mapped[UuidPk]
    tenant_id: Mapped[TenantId]
    webhook_id: Mapped[uuid.UUID]
    # `changes.id`; not a foreign key so old changes can be pruned independently.
    change_id: Mapped[int] = mapped_column(BigInteger)
    # The change's account, feed position (`changes.txid`) and per-account sequence.
    account_id: Mapped[uuid.UUID]
    change_txid: Mapped[int] = mapped_column(BigInteger)
    change_seq: Mapped[int] = mapped_column(BigInteger)
    event_type: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16), server_default="pending")
    attempts: Mapped[int] = mapped_column(Integer, server_default="0")
    next_attempt_at: Mapped[datetime] = mapped_column(server_default=func.now())
    last_status_code: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(Text)
    # The last attempt's round trip: until the answer, or until the request failed;
    # NULL when no request was made.
    last_duration_ms: Mapped[int | None] = mapped_column(Integer)
    delivered_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
