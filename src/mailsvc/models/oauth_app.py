"""OAuth2 applications a tenant registered at a provider (Google, Microsoft, any other)."""

from __future__ import annotations

from sqlalchemy import CheckConstraint, Integer, String, Text, UniqueConstraint
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Mapped, mapped_column

from mailsvc.kit.db import Base, TenantId, TimestampMixin, UuidPk, one_of
from mailsvc.models.account import SECURITY_VALUES

OAUTH_PROVIDERS = ("google", "microsoft", "generic")


class OAuthApp(TimestampMixin, Base):
    """A client registration at an OAuth2 provider, and the mail servers its tokens open.

    Accounts connected through it keep a reference; an app in use cannot be deleted.
    """

    __tablename__ = "oauth_apps"
    __table_args__ = (
        # The target of the accounts' tenant-scoped foreign key.
        UniqueConstraint("tenant_id", "id"),
        CheckConstraint(one_of("provider", OAUTH_PROVIDERS), name="provider"),
        CheckConstraint(one_of("imap_security", SECURITY_VALUES), name="imap_security"),
        CheckConstraint(one_of("smtp_security", SECURITY_VALUES), name="smtp_security"),
    )

    id: Mapped[UuidPk]
    tenant_id: Mapped[TenantId]
    name: Mapped[str] = mapped_column(String(200))
    provider: Mapped[str] = mapped_column(String(16))
    authorization_url: Mapped[str] = mapped_column(String(2048))
    token_url: Mapped[str] = mapped_column(String(2048))
    userinfo_url: Mapped[str | None] = mapped_column(String(2048))
    client_id: Mapped[str] = mapped_column(String(1024))
    # Sealed like account passwords (kit/crypto.py); never returned.
    client_secret: Mapped[str] = mapped_column(Text)
    scopes: Mapped[list[str]] = mapped_column(ARRAY(String(512)))
    # mailsvc's callback as registered at the provider.
    redirect_uri: Mapped[str] = mapped_column(String(2048))

    imap_host: Mapped[str] = mapped_column(String(255))
    imap_port: Mapped[int] = mapped_column(Integer)
    imap_security: Mapped[str] = mapped_column(String(16))
    smtp_host: Mapped[str] = mapped_column(String(255))
    smtp_port: Mapped[int] = mapped_column(Integer)
    smtp_security: Mapped[str] = mapped_column(String(16))
