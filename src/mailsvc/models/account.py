"""Mailbox accounts: connection settings, encrypted credentials, connection state."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from mailsvc.kit.db import Base, TenantId, TimestampMixin, UuidPk, one_of, tenant_foreign_key

SECURITY_VALUES = ("tls", "starttls", "none")
AUTH_TYPES = ("password", "oauth2")
ACCOUNT_STATES = ("connecting", "connected", "auth_error", "connect_error", "disabled")


class Account(TimestampMixin, Base):
    """One registered mailbox account (IMAP for reading, SMTP for sending)."""

    __tablename__ = "accounts"
    __table_args__ = (
        UniqueConstraint("tenant_id", "email"),
        # Referenced by the tenant-scoped foreign keys (kit.db.tenant_foreign_key).
        UniqueConstraint("tenant_id", "id"),
        CheckConstraint(one_of("imap_security", SECURITY_VALUES), name="imap_security"),
        CheckConstraint(one_of("smtp_security", SECURITY_VALUES), name="smtp_security"),
        CheckConstraint(one_of("auth_type", AUTH_TYPES), name="auth_type"),
        CheckConstraint(one_of("state", ACCOUNT_STATES), name="state"),
        # Each way of logging in has what it needs, and only that.
        CheckConstraint(
            "auth_type <> 'password' OR (imap_secret IS NOT NULL AND smtp_secret IS NOT NULL)",
            name="password_secrets",
        ),
        CheckConstraint(
            "auth_type <> 'oauth2' OR (oauth_app_id IS NOT NULL AND oauth_tokens IS NOT NULL)",
            name="oauth2_tokens",
        ),
        tenant_foreign_key("oauth_app_id", "oauth_apps", ondelete="RESTRICT"),
        # Finding an app's accounts (and checking, on delete, that it has none).
        Index(
            "ix_accounts_oauth_app",
            "tenant_id",
            "oauth_app_id",
            postgresql_where=text("oauth_app_id IS NOT NULL"),
        ),
    )

    id: Mapped[UuidPk]
    tenant_id: Mapped[TenantId]
    email: Mapped[str] = mapped_column(String(320))
    display_name: Mapped[str | None] = mapped_column(String(200))

    imap_host: Mapped[str] = mapped_column(String(255))
    imap_port: Mapped[int] = mapped_column(Integer)
    imap_security: Mapped[str] = mapped_column(String(16))
    imap_username: Mapped[str] = mapped_column(String(320))
    # AES-256-GCM ciphertext with its key id (kit/crypto.py); never the plaintext.
    # NULL for OAuth2 accounts, which log in with `oauth_tokens`.
    imap_secret: Mapped[str | None] = mapped_column(Text)

    smtp_host: Mapped[str] = mapped_column(String(255))
    smtp_port: Mapped[int] = mapped_column(Integer)
    smtp_security: Mapped[str] = mapped_column(String(16))
    smtp_username: Mapped[str] = mapped_column(String(320))
    smtp_secret: Mapped[str | None] = mapped_column(Text)

    auth_type: Mapped[str] = mapped_column(String(16), server_default="password")
    # OAuth2 accounts: the app that issued their tokens, the tokens (one sealed JSON
    # object: access and refresh token), and when the access token expires.
    oauth_app_id: Mapped[uuid.UUID | None]
    oauth_tokens: Mapped[str | None] = mapped_column(Text)
    oauth_expires_at: Mapped[datetime | None]
    state: Mapped[str] = mapped_column(String(16), server_default="connecting")
    last_error: Mapped[str | None] = mapped_column(Text)
    last_error_at: Mapped[datetime | None]
    state_changed_at: Mapped[datetime | None]
    # Bumped whenever connection settings or credentials change, so a watcher holding
    # an old connection (or parked in auth_error) knows to reconnect.
    credentials_version: Mapped[int] = mapped_column(Integer, server_default="1")
    sync_options: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default="{}")
    # Aliases allowed as From, where the sent copy goes, drafts on the server.
    send_options: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default="{}")
    # Last sequence number handed to this account's `changes` rows; incremented under
    # the row lock so each account's changes commit in sequence order.
    change_seq: Mapped[int] = mapped_column(BigInteger, server_default="0")
    # The feed order key of the account's last change (`changes.txid`), so its next
    # changes never sort before it.
    change_txid: Mapped[int] = mapped_column(BigInteger, server_default="0")
    # When the first mirror became fully searchable (`account.indexed`, announced once;
    # mailsvc.search.indexed). NULL until then.
    indexed_at: Mapped[datetime | None]
