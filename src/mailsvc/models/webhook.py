"""Webhook subscriptions: where a tenant wants its change events POSTed."""

from __future__ import annotations

from sqlalchemy import BigInteger, Integer, String, Text, UniqueConstraint, text, true
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Mapped, mapped_column

from mailsvc.kit.db import Base, TenantId, TimestampMixin, UuidPk


class Webhook(TimestampMixin, Base):
    """An endpoint that receives the tenant's events, signed with `secret`.

    Repeated failures disable it (`active` false, `disabled_reason` says why) rather
    than queueing deliveries without end.
    """

    __tablename__ = "webhooks"
    # Listing, and the target of the tenant-scoped foreign key of its deliveries.
    __table_args__ = (UniqueConstraint("tenant_id", "id"),)

    id: Mapped[UuidPk]
    tenant_id: Mapped[TenantId]
    url: Mapped[str] = mapped_column(String(2048))
    # Change types to deliver (e.g. "message.created"); empty means every type.
    event_types: Mapped[list[str]] = mapped_column(ARRAY(String(64)), server_default=text("'{}'"))
    active: Mapped[bool] = mapped_column(server_default=true())
    # The HMAC signing secret, encrypted like account secrets (kit/crypto.py).
    secret: Mapped[str] = mapped_column(Text)
    description: Mapped[str | None] = mapped_column(String(500))
    # Deliveries given up in a row; reset by a success.
    failure_count: Mapped[int] = mapped_column(Integer, server_default="0")
    disabled_reason: Mapped[str | None] = mapped_column(Text)
    # The fan-out's place in the tenant's change feed (a `FeedPosition`): every change
    # up to it has its delivery row (or did not match `event_types`). Moved forward in
    # the transaction that inserts those rows, so a crash repeats nothing.
    cursor_txid: Mapped[int] = mapped_column(BigInteger, server_default="0")
    cursor_id: Mapped[int] = mapped_column(BigInteger, server_default="0")
