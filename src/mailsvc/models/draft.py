"""Drafts being composed, with their attachments, until they are sent or deleted."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import (
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    false,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.orm import Mapped, mapped_column, relationship

from mailsvc.kit.db import Base, TenantId, TimestampMixin, Uid, UuidPk, tenant_foreign_key
from mailsvc.models.message import Address


class Draft(TimestampMixin, Base):
    """A message being composed; sending it builds the MIME into an `outbox` row."""

    __tablename__ = "drafts"
    __table_args__ = (
        UniqueConstraint("tenant_id", "id"),
        Index("ix_drafts_tenant_id_account_id_id", "tenant_id", "account_id", "id"),
        tenant_foreign_key("account_id", "accounts", ondelete="CASCADE"),
        tenant_foreign_key("in_reply_to_message_id", "messages", ondelete="SET NULL"),
        tenant_foreign_key("forward_of_message_id", "messages", ondelete="SET NULL"),
        # Every message deletion looks up the drafts that point at it.
        Index(
            "ix_drafts_in_reply_to_message_id",
            "tenant_id",
            "in_reply_to_message_id",
            postgresql_where=text("in_reply_to_message_id IS NOT NULL"),
        ),
        Index(
            "ix_drafts_forward_of_message_id",
            "tenant_id",
            "forward_of_message_id",
            postgresql_where=text("forward_of_message_id IS NOT NULL"),
        ),
    )

    id: Mapped[UuidPk]
    tenant_id: Mapped[TenantId]
    account_id: Mapped[uuid.UUID]
    # One `Address`; NULL sends as the account's own address and display name.
    from_: Mapped[Address | None] = mapped_column(JSONB)
    to: Mapped[list[Address]] = mapped_column(JSONB, server_default=text("'[]'"))
    cc: Mapped[list[Address]] = mapped_column(JSONB, server_default=text("'[]'"))
    bcc: Mapped[list[Address]] = mapped_column(JSONB, server_default=text("'[]'"))
    reply_to: Mapped[list[Address]] = mapped_column(JSONB, server_default=text("'[]'"))
    subject: Mapped[str | None] = mapped_column(Text)
    text_body: Mapped[str | None] = mapped_column(Text)
    html_body: Mapped[str | None] = mapped_column(Text)
    # Allow-listed extra headers, name -> value, checked for CR/LF on the way in.
    headers: Mapped[dict[str, str]] = mapped_column(JSONB, server_default=text("'{}'"))

    in_reply_to_message_id: Mapped[uuid.UUID | None]
    forward_of_message_id: Mapped[uuid.UUID | None]
    # Replies: quote the original below the new text. Forwards: its text inline
    # instead of the original attached as message/rfc822.
    quote_original: Mapped[bool] = mapped_column(server_default=false())
    forward_inline: Mapped[bool] = mapped_column(server_default=false())
    # The reply headers, copied when the draft is created: message rows are replaced
    # when a mailbox's UIDVALIDITY changes, and a reply must keep its threading.
    in_reply_to: Mapped[str | None] = mapped_column(Text)
    references: Mapped[list[str]] = mapped_column(ARRAY(Text), server_default=text("'{}'"))

    # The copy saved to the account's Drafts mailbox (APPEND), if any.
    imap_uidvalidity: Mapped[Uid | None]
    imap_uid: Mapped[Uid | None]

    attachments: Mapped[list[DraftAttachment]] = relationship(
        lazy="raise", passive_deletes=True, order_by="DraftAttachment.id"
    )


class DraftAttachment(Base):
    """An uploaded attachment of a draft; kept here because nothing else holds it."""

    __tablename__ = "draft_attachments"
    __table_args__ = (
        Index("ix_draft_attachments_tenant_id_draft_id", "tenant_id", "draft_id"),
        tenant_foreign_key("draft_id", "drafts", ondelete="CASCADE"),
    )

    id: Mapped[UuidPk]
    tenant_id: Mapped[TenantId]
    draft_id: Mapped[uuid.UUID]
    filename: Mapped[str] = mapped_column(Text)
    content_type: Mapped[str] = mapped_column(String(255))
    # Decoded octets, i.e. len(content).
    size: Mapped[int] = mapped_column(Integer)
    # For inline parts referenced from the HTML body as `cid:<content_id>`.
    content_id: Mapped[str | None] = mapped_column(Text)
    is_inline: Mapped[bool] = mapped_column(server_default=false())
    # The whole file, so not loaded unless asked for (`undefer(DraftAttachment.content)`);
    # touching it unloaded raises instead of lazy-loading.
    content: Mapped[bytes] = mapped_column(LargeBinary, deferred=True, deferred_raiseload=True)
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
