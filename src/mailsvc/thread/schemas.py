"""Thread API bodies: conversation summaries and whole conversations."""

from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import BaseModel, Field

from mailsvc.message.schemas import AddressOut, MessageSummary


class ThreadSummary(BaseModel):
    """A conversation as a thread list shows it."""

    id: uuid.UUID
    account_id: uuid.UUID
    subject: str | None = Field(description="Without `Re:`, `Fwd:` and similar prefixes.")
    participants: list[AddressOut] = Field(description="Distinct senders, first seen first.")
    message_count: int
    unread_count: int
    last_message_at: datetime = Field(description="When its newest message was received.")


class ThreadPage(BaseModel):
    """One page of threads, newest activity first; pass `next_cursor` as `cursor`."""

    items: list[ThreadSummary]
    next_cursor: str | None = None


class ThreadOut(ThreadSummary):
    """A conversation with its messages, oldest first."""

    messages: list[MessageSummary]
