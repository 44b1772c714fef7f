"""The append-only change log behind the change feed, SSE and webhooks."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Index, SmallInteger, String, UniqueConstraint, func, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from mailsvc.kit.db import Base, TenantId


class Change(Base):
    """One event, written in the same transaction as the change it describes.

    `account_id` is deliberately not a foreign key: the `account.deleted` event must
    outlive the account's rows. `seq` is per account and gap-free.
    """

    __tablename__ = "changes"
    __table_args__ = (
        UniqueConstraint("tenant_id", "account_id", "seq"),
        # The feed's order (see `txid`).
        Index("ix_changes_tenant_id_txid_id", "tenant_id", "txid", "id"),
        Index("ix_changes_created_at", "created_at"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    # The writing transaction's id: the feed orders by (txid, id) and reads only
    # transactions older than any still running, so no change can commit behind a
    # reader's position (migration 0007).
    txid: Mapped[int] = mapped_column(
        BigInteger, server_default=text("(pg_current_xact_id()::text)::bigint")
    )
    tenant_id: Mapped[TenantId]
    account_id: Mapped[uuid.UUID]
    seq: Mapped[int] = mapped_column(BigInteger)
    type: Mapped[str] = mapped_column(String(64))
    payload: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default="{}")
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())


class ChangeTrim(Base):
    """How far retention has trimmed the log (one row): a feed position before this
    may have lost changes, and its reader must resync (410 `cursor_expired`)."""

    __tablename__ = "change_trims"

    id: Mapped[int] = mapped_column(SmallInteger, primary_key=True)
    txid: Mapped[int] = mapped_column(BigInteger)
    change_id: Mapped[int] = mapped_column(BigInteger)
    trimmed_at: Mapped[datetime] = mapped_column(server_default=func.now())
