"""The durable outbox: one row per message to send through the account's SMTP server."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import (
    CheckConstraint,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    false,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Mapped, mapped_column

from mailsvc.kit.db import Base, TenantId, TimestampMixin, UuidPk, one_of, tenant_foreign_key

OUTBOX_STATUSES = ("queued", "sending", "sent", "failed", "cancelled", "bounced")


class OutboxMessage(TimestampMixin, Base):
    """A send job: the exact bytes to send, the envelope, and how far it got.

    Life cycle: `queued` -> `sending` -> `sent` (-> `bounced` when a DSN arrives),
    or back to `queued` with a later `next_attempt_at` after a 4xx reply or a
    connection error, or `failed` after a 5xx reply or `max_attempts` (a user's
    retry puts it back to `queued` with a fresh budget); `cancelled` by the user
    while still queued. While `sending`, `next_attempt_at` is the
    lease deadline: a row still `sending` after it belongs to a dead process and is
    retried, checking the Sent mailbox for `message_id_header` first.
    """

    __tablename__ = "outbox"
    __table_args__ = (
        CheckConstraint(one_of("status", OUTBOX_STATUSES), name="status"),
        Index(
            "ix_outbox_tenant_id_status_next_attempt_at", "tenant_id", "status", "next_attempt_at"
        ),
        Index("ix_outbox_tenant_id_account_id_id", "tenant_id", "account_id", "id"),
        # Bounces are matched to their entry by the original Message-ID.
        Index("ix_outbox_tenant_id_message_id_header", "tenant_id", "message_id_header"),
        tenant_foreign_key("account_id", "accounts", ondelete="CASCADE"),
        tenant_foreign_key("draft_id", "drafts", ondelete="SET NULL"),
        # Deleting a draft looks up the jobs built from it.
        Index(
            "ix_outbox_draft_id",
            "tenant_id",
            "draft_id",
            postgresql_where=text("draft_id IS NOT NULL"),
        ),
        # The sweep for due and stalled jobs runs across tenants; it only needs the
        # few rows still in flight, so this index stays small.
        Index(
            "ix_outbox_due",
            "next_attempt_at",
            postgresql_where=text("status IN ('queued', 'sending')"),
        ),
        # Copies to file again in the Sent mailbox (the sweep spans tenants).
        Index(
            "ix_outbox_sent_copy_due",
            "updated_at",
            postgresql_where=text(
                "status IN ('sent', 'bounced') AND sent_copy_saved_at IS NULL "
                "AND sent_copy_attempts > 0"
            ),
        ),
        # Per tenant; a partial index, so ON CONFLICT must repeat its WHERE clause.
        Index(
            "uq_outbox_tenant_id_idempotency_key",
            "tenant_id",
            "idempotency_key",
            unique=True,
            postgresql_where=text("idempotency_key IS NOT NULL"),
        ),
    )

    id: Mapped[UuidPk]
    tenant_id: Mapped[TenantId]
    account_id: Mapped[uuid.UUID]
    draft_id: Mapped[uuid.UUID | None]
    status: Mapped[str] = mapped_column(String(16), server_default="queued")

    # What the user asked for; NULL means at once.
    send_at: Mapped[datetime | None]
    next_attempt_at: Mapped[datetime] = mapped_column(server_default=func.now())
    attempts: Mapped[int] = mapped_column(Integer, server_default="0")
    max_attempts: Mapped[int] = mapped_column(Integer, server_default="10")
    last_attempt_at: Mapped[datetime | None]

    # Generated before the first attempt, so a retry can look for an earlier success.
    message_id_header: Mapped[str] = mapped_column(Text)
    envelope_from: Mapped[str] = mapped_column(String(320))
    envelope_to: Mapped[list[str]] = mapped_column(ARRAY(String(320)))
    # The built message: every attempt sends exactly these bytes. Deferred (and
    # raising when touched unloaded) so listings never read it.
    raw_mime: Mapped[bytes] = mapped_column(LargeBinary, deferred=True, deferred_raiseload=True)

    # The server's last reply (success included); `last_error` is for failures
    # without one (DNS, TLS, connection refused or dropped).
    last_smtp_code: Mapped[int | None] = mapped_column(Integer)
    last_smtp_reply: Mapped[str | None] = mapped_column(Text)
    last_error: Mapped[str | None] = mapped_column(Text)

    idempotency_key: Mapped[str | None] = mapped_column(String(255))
    # SHA-256 (hex) of the request that used the key: a reuse with another body is a 422.
    request_hash: Mapped[str | None] = mapped_column(String(64))

    # Set when an attempt may have succeeded unseen (its reply was lost, or its
    # process died): the next attempt looks in the Sent mailbox first.
    verify_sent: Mapped[bool] = mapped_column(server_default=false())
    # The message of ours this one replies to: flagged \Answered after sending.
    answers_message_id: Mapped[uuid.UUID | None]
    subject: Mapped[str | None] = mapped_column(Text)

    sent_at: Mapped[datetime | None]
    # Set once the copy is in the Sent mailbox (or the provider files it itself).
    sent_copy_saved_at: Mapped[datetime | None]
    # Failed tries to file that copy; the sweep tries again, with growing pauses.
    sent_copy_attempts: Mapped[int] = mapped_column(Integer, server_default="0")
    # From a delivery status notification (RFC 3464): e.g. "5.1.1" and its text.
    bounce_status: Mapped[str | None] = mapped_column(String(16))
    bounce_diagnostic: Mapped[str | None] = mapped_column(Text)
