"""Conversations: messages grouped JWZ-style, or by Gmail's X-GM-THRID."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import BigInteger, Index, Integer, Text, UniqueConstraint, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from mailsvc.kit.db import Base, TenantId, TimestampMixin, UuidPk, tenant_foreign_key
from mailsvc.models.message import Address


class Thread(TimestampMixin, Base):
    """A conversation within one account, across its mailboxes.

    Counts and `last_message_at` are kept up to date by whoever links or unlinks a
    message, in the same transaction, so listing threads never aggregates messages.
    """

    __tablename__ = "threads"
    __table_args__ = (
        UniqueConstraint("tenant_id", "id"),
        tenant_foreign_key("account_id", "accounts", ondelete="CASCADE"),
        # NULLs are distinct, so only Gmail threads are held unique here.
        UniqueConstraint("tenant_id", "account_id", "gm_thread_id"),
        Index(
            "ix_threads_listing",
            "tenant_id",
            "account_id",
            text("last_message_at DESC"),
            text("id DESC"),
        ),
    )

    id: Mapped[UuidPk]
    tenant_id: Mapped[TenantId]
    account_id: Mapped[uuid.UUID]
    # Without "Re:", "Fwd:" and similar prefixes.
    subject: Mapped[str | None] = mapped_column(Text)
    # Distinct senders and recipients, in order of first appearance.
    participants: Mapped[list[Address]] = mapped_column(JSONB, server_default=text("'[]'"))
    message_count: Mapped[int] = mapped_column(Integer, server_default="0")
    unread_count: Mapped[int] = mapped_column(Integer, server_default="0")
    last_message_at: Mapped[datetime]
    gm_thread_id: Mapped[int | None] = mapped_column(BigInteger)
