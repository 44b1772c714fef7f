"""Sync API bodies: triggering a sync, its progress, and an account's mailboxes."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

MailboxRole = Literal["inbox", "sent", "drafts", "trash", "junk", "archive", "all", "flagged"]
SyncState = Literal["pending", "syncing", "synced", "error"]


class SyncRequested(BaseModel):
    """A sync was queued (or one was already queued or running and will run again)."""

    account_id: uuid.UUID
    job_id: str = Field(examples=["sync:0192f3c4-..."])
    queued: bool = Field(
        description="False when a sync of this account was already queued or running; "
        "it then makes one more pass, so this request is not lost."
    )
    full: bool
    status_url: str = Field(examples=["/api/sync/status/0192f3c4-..."])


class MailboxOut(BaseModel):
    """A mailbox (folder) of an account and its sync progress."""

    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    name: str = Field(description="Full path, decoded (e.g. `Archive.2026`).")
    delimiter: str | None
    role: MailboxRole | None = Field(description="Special use, or `inbox`.")
    attributes: list[str]
    selectable: bool
    messages_total: int = Field(description="Messages on the server at the last sync.")
    messages_unseen: int = Field(description="Stored messages without `\\Seen` (unread).")
    messages_synced: int = Field(
        description="Messages stored in mailsvc: listed by `GET /api/messages` at once."
    )
    messages_indexed: int = Field(
        description="Stored messages whose search document is written, so full-text "
        "search (`q=`) can find them: `messages_synced` less those still queued for the "
        "worker's indexer. During a first mirror it trails `messages_synced` (a stored "
        "message is listable before it is searchable); the account's `account.indexed` "
        "event says when the first mirror is fully searchable."
    )
    sync_state: SyncState
    last_synced_at: datetime | None
    sync_error: str | None


class MailboxList(BaseModel):
    """Every mailbox of an account, INBOX first. Accounts have few, so no paging."""

    items: list[MailboxOut]


class IdleStatus(BaseModel):
    """The account's live IMAP IDLE connection, if one is up."""

    connected: bool
    mailboxes: list[str] = Field(default_factory=list)
    since: datetime | None = None


class SyncStatus(BaseModel):
    """Where an account's mirror stands: connection state, progress per mailbox, IDLE."""

    account_id: uuid.UUID
    state: Literal["connecting", "connected", "auth_error", "connect_error", "disabled"]
    last_error: str | None
    last_error_at: datetime | None
    messages_total: int = Field(description="Messages on the server, over every mailbox.")
    messages_synced: int = Field(description="Messages stored (listable), over every mailbox.")
    messages_indexed: int = Field(
        description="Stored messages that full-text search can find, over every mailbox; "
        "equal to `messages_synced` once the worker's indexer has caught up."
    )
    idle: IdleStatus
    mailboxes: list[MailboxOut]
