"""IMAP mailboxes (folders) of an account and the sync state of each."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import (
    CheckConstraint,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    false,
    text,
    true,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Mapped, mapped_column

from mailsvc.kit.db import (
    Base,
    ModSeq,
    TenantId,
    TimestampMixin,
    Uid,
    UuidPk,
    one_of,
    tenant_foreign_key,
)

# RFC 6154 special-use attributes as API-friendly role names, plus `inbox`
# (INBOX is special by name, not by attribute). `\Sent` -> `sent`, and so on.
MAILBOX_ROLES = ("inbox", "sent", "drafts", "trash", "junk", "archive", "all", "flagged")
SYNC_STATES = ("pending", "syncing", "synced", "error")


class Mailbox(TimestampMixin, Base):
    """One mailbox as LIST reports it, with the cursor its sync resumes from.

    `uidvalidity`, `uidnext` and `highestmodseq` describe what is stored here, not
    what the server last said: they advance in the same transaction as each stored
    batch (`uidnext` is the first UID not fetched yet, the server's UIDNEXT once a
    pass completes), so after a crash the sync resumes without loss or duplicates.
    All three are NULL until the first SELECT.
    """

    __tablename__ = "mailboxes"
    __table_args__ = (
        UniqueConstraint("tenant_id", "id"),
        UniqueConstraint("tenant_id", "account_id", "name"),
        tenant_foreign_key("account_id", "accounts", ondelete="CASCADE"),
        CheckConstraint(one_of("special_use", MAILBOX_ROLES), name="special_use"),
        CheckConstraint(one_of("sync_state", SYNC_STATES), name="sync_state"),
        # A list by role finds the Gmail label folders of that role (the listing of
        # `?mailbox=inbox`, message/read_repository.py); other servers have none.
        Index(
            "ix_mailboxes_gmail_labels",
            "tenant_id",
            "special_use",
            postgresql_where=text("gmail_label IS NOT NULL"),
        ),
    )

    id: Mapped[UuidPk]
    tenant_id: Mapped[TenantId]
    account_id: Mapped[uuid.UUID]
    # Full path, decoded from modified UTF-7 (RFC 3501 5.1.3) or as sent under UTF8=ACCEPT.
    name: Mapped[str] = mapped_column(Text)
    # NULL when the server reports a NIL delimiter (a flat namespace).
    delimiter: Mapped[str | None] = mapped_column(String(8))
    special_use: Mapped[str | None] = mapped_column(String(16))
    # LIST attributes as sent, e.g. {"\HasChildren", "\Sent"}.
    attributes: Mapped[list[str]] = mapped_column(ARRAY(Text), server_default=text("'{}'"))
    subscribed: Mapped[bool] = mapped_column(server_default=false())
    # False for `\Noselect` / `\NonExistent` entries that only hold children.
    selectable: Mapped[bool] = mapped_column(server_default=true())
    # Gmail (mailsvc.sync.plan.gmail_label): the label this folder shows, e.g.
    # `\Inbox` or `Work`. Such a folder is listed but never fetched: its messages
    # are the rows of All Mail carrying the label. NULL on other servers and for
    # Gmail's store (All Mail, Spam, Trash).
    gmail_label: Mapped[str | None] = mapped_column(Text)

    uidvalidity: Mapped[Uid | None]
    uidnext: Mapped[Uid | None]
    # NULL also when the server has no CONDSTORE (or the mailbox is `\NoModSeq`).
    highestmodseq: Mapped[ModSeq | None]

    # From the server's last SELECT/STATUS, for progress and counts.
    messages_total: Mapped[int] = mapped_column(Integer, server_default="0")
    messages_unseen: Mapped[int] = mapped_column(Integer, server_default="0")
    # Rows stored here: `messages_synced / messages_total` is the sync progress.
    messages_synced: Mapped[int] = mapped_column(Integer, server_default="0")

    sync_state: Mapped[str] = mapped_column(String(16), server_default="pending")
    sync_started_at: Mapped[datetime | None]
    last_synced_at: Mapped[datetime | None]
    sync_error: Mapped[str | None] = mapped_column(Text)
    sync_error_at: Mapped[datetime | None]
