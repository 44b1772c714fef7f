"""API keys that applications exchange for JWTs at `POST /auth/login`."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import String, func
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Mapped, mapped_column

from mailsvc.kit.db import Base, UuidPk


class ApiKey(Base):
    """An API key, stored as a SHA-256 hash; the key itself is shown once at creation.

    Keys are 256-bit random values, so a fast hash is enough: there is nothing to
    brute-force that a slow password hash would protect.
    """

    __tablename__ = "api_keys"

    id: Mapped[UuidPk]
    name: Mapped[str] = mapped_column(String(200))
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    tenants: Mapped[list[str]] = mapped_column(ARRAY(String(64)))
    scopes: Mapped[list[str]] = mapped_column(ARRAY(String(64)))
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
    last_used_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]
