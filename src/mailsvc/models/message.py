"""Messages mirrored from IMAP: parsed headers, bodies and flags."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import BigInteger, Index, Integer, Text, UniqueConstraint, false, text
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.orm import Mapped, mapped_column, relationship

from mailsvc.kit.db import Base, ModSeq, TenantId, TimestampMixin, Uid, UuidPk, tenant_foreign_key

if TYPE_CHECKING:
    from mailsvc.models.attachment import Attachment

Address = dict[str, str | None]
"""`{"name": ..., "address": ...}` as stored in the address columns."""


class Message(TimestampMixin, Base):
    """One message in one mailbox: a row per (mailbox, uidvalidity, uid).

    The same RFC 822 message in two mailboxes is two rows (IMAP has no stable
    cross-mailbox identity outside Gmail's X-GM-MSGID). The raw source is not
    stored; it is streamed from IMAP on demand.
    """

    __tablename__ = "messages"
    __table_args__ = (
        UniqueConstraint("tenant_id", "id"),
        UniqueConstraint("tenant_id", "mailbox_id", "uidvalidity", "uid"),
        tenant_foreign_key("account_id", "accounts", ondelete="CASCADE"),
        tenant_foreign_key("mailbox_id", "mailboxes", ondelete="CASCADE"),
        tenant_foreign_key("thread_id", "threads", ondelete="SET NULL"),
        # Listing a mailbox newest first, keyset-paginated on (internal_date, id).
        # INTERNALDATE rather than the Date header: the server always has one, while
        # the header can be missing, unparseable or set by the sender to anything.
        Index(
            "ix_messages_mailbox_listing",
            "tenant_id",
            "mailbox_id",
            text("internal_date DESC"),
            text("id DESC"),
        ),
        # The same across all of a tenant's accounts (no account filter).
        Index(
            "ix_messages_tenant_listing",
            "tenant_id",
            text("internal_date DESC"),
            text("id DESC"),
        ),
        # The same across an account's mailboxes (no mailbox filter).
        Index(
            "ix_messages_account_listing",
            "tenant_id",
            "account_id",
            text("internal_date DESC"),
            text("id DESC"),
        ),
        Index("ix_messages_thread", "tenant_id", "thread_id", "internal_date"),
        # Threading and reply lookups resolve Message-IDs within one account.
        Index("ix_messages_message_id_header", "tenant_id", "account_id", "message_id_header"),
        # Threading finds the replies that arrived before their parent (sync/engine.py).
        Index(
            "ix_messages_references",
            "references",
            postgresql_using="gin",
            postgresql_with={"fastupdate": "off"},
        ),
        Index("ix_messages_in_reply_to", "tenant_id", "account_id", "in_reply_to"),
        # Gmail rows by label (`?label=`, `label:`, a label folder's listing). Partial:
        # rows of other servers (labels NULL) cost it nothing. A GIN index cannot lead
        # with tenant_id without btree_gin; the tenant is checked on the rows found.
        Index(
            "ix_messages_labels",
            "labels",
            postgresql_using="gin",
            postgresql_where=text("labels IS NOT NULL"),
        ),
        # Unread messages per mailbox, counted into `mailboxes.messages_unseen` after
        # every change (mailsvc.mirror.repository.UNSEEN): reads only the unread rows.
        Index(
            "ix_messages_unseen",
            "tenant_id",
            "mailbox_id",
            postgresql_where=text("NOT ('\\Seen'::text = ANY (flags))"),
        ),
    )

    id: Mapped[UuidPk]
    tenant_id: Mapped[TenantId]
    account_id: Mapped[uuid.UUID]
    mailbox_id: Mapped[uuid.UUID]
    uid: Mapped[Uid]
    uidvalidity: Mapped[Uid]
    modseq: Mapped[ModSeq | None]

    message_id_header: Mapped[str | None] = mapped_column(Text)
    in_reply_to: Mapped[str | None] = mapped_column(Text)
    references: Mapped[list[str]] = mapped_column(ARRAY(Text), server_default=text("'{}'"))
    subject: Mapped[str | None] = mapped_column(Text)
    # Address lists: JSON arrays of `Address`, in header order.
    from_: Mapped[list[Address]] = mapped_column(JSONB, server_default=text("'[]'"))
    sender: Mapped[list[Address]] = mapped_column(JSONB, server_default=text("'[]'"))
    to: Mapped[list[Address]] = mapped_column(JSONB, server_default=text("'[]'"))
    cc: Mapped[list[Address]] = mapped_column(JSONB, server_default=text("'[]'"))
    bcc: Mapped[list[Address]] = mapped_column(JSONB, server_default=text("'[]'"))
    reply_to: Mapped[list[Address]] = mapped_column(JSONB, server_default=text("'[]'"))
    # The Date header; NULL when missing or unparseable.
    date: Mapped[datetime | None]
    internal_date: Mapped[datetime]
    # RFC822.SIZE in octets.
    size: Mapped[int] = mapped_column(Integer)
    # System flags (`\Seen`, `\Flagged`, ...) and keywords, as the server reports them.
    flags: Mapped[list[str]] = mapped_column(ARRAY(Text), server_default=text("'{}'"))

    thread_id: Mapped[uuid.UUID | None]
    # Gmail's X-GM-THRID, when the server offers X-GM-EXT-1.
    gm_thread_id: Mapped[int | None] = mapped_column(BigInteger)
    # Gmail's X-GM-MSGID: the message's identity across All Mail, Spam and Trash.
    gm_message_id: Mapped[int | None] = mapped_column(BigInteger)
    # Gmail's X-GM-LABELS, decoded: system labels with their backslash (`\Inbox`,
    # `\Important`), user labels by name. NULL on servers without X-GM-EXT-1.
    labels: Mapped[list[str] | None] = mapped_column(ARRAY(Text))

    snippet: Mapped[str | None] = mapped_column(Text)
    # Bodies are TOAST-compressed with lz4 where the server has it (migration 0003):
    # pglz cost a third of the store's time per message.
    text_body: Mapped[str | None] = mapped_column(Text)
    # As received; sanitized on output, never here.
    html_body: Mapped[str | None] = mapped_column(Text)
    has_attachments: Mapped[bool] = mapped_column(server_default=false())
    # Set when parsing failed part-way: the row holds what could be parsed.
    parse_error: Mapped[str | None] = mapped_column(Text)

    attachments: Mapped[list[Attachment]] = relationship(
        lazy="raise", passive_deletes=True, order_by="Attachment.id"
    )
