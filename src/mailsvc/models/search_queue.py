"""Messages whose search documents are due: the search indexer's work queue."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import BigInteger, Index, func
from sqlalchemy.orm import Mapped, mapped_column

from mailsvc.kit.db import Base, TenantId


class SearchQueueEntry(Base):
    """A message to (re)index or drop from its tenant's search index.

    Written by triggers on `messages` (migration 0013) in the transaction that
    inserts, changes a searched column of, or deletes the message, and deleted by
    the indexer in the transaction that hands the batch to the backend
    (`mailsvc.search.indexer`). A message may have several rows (stored, then
    flagged): the indexer reads its row as it is then, once. No foreign keys: the
    row of a deleted message (or account) is what tells the index to drop it.
    """

    __tablename__ = "search_queue"
    __table_args__ = (
        # The indexer takes a tenant's oldest rows first.
        Index("ix_search_queue_tenant_id_seq", "tenant_id", "seq"),
        # What is still to index, per account (sync status, `account.indexed`), and
        # whether a message is queued already (`queue_all`).
        Index("ix_search_queue_tenant_id_account_id", "tenant_id", "account_id", "message_id"),
    )

    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    tenant_id: Mapped[TenantId]
    account_id: Mapped[uuid.UUID]
    message_id: Mapped[uuid.UUID]
    queued_at: Mapped[datetime] = mapped_column(server_default=func.now())
