"""Events as applications receive them: the same body in the feed, SSE and webhooks."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal, get_args

from pydantic import BaseModel, Field, TypeAdapter

from mailsvc.event.repository import FeedPosition
from mailsvc.models import Change


class MessageCreated(BaseModel):
    """A message arrived in a mailbox (new mail, a copy, or the target of a move
    the server reported as new)."""

    message_id: uuid.UUID
    mailbox_id: uuid.UUID
    uid: int
    subject: str | None = None


class MessageUpdated(BaseModel):
    """A message's flags (or Gmail labels) changed, or it moved to another mailbox."""

    message_id: uuid.UUID
    mailbox_id: uuid.UUID
    uid: int
    flags: list[str] | None = Field(default=None, description="The flags now, when they changed.")
    labels: list[str] | None = Field(
        default=None,
        description="Gmail: the labels now, when the flags or labels changed.",
    )
    previous_mailbox_id: uuid.UUID | None = Field(
        default=None, description="Set when the message moved."
    )


class MessageDeleted(BaseModel):
    """A message left a mailbox (expunged, or moved away)."""

    message_id: uuid.UUID
    mailbox_id: uuid.UUID
    uid: int


class MailboxChanged(BaseModel):
    """A mailbox was created, deleted or renamed on the server."""

    mailbox_id: uuid.UUID
    name: str
    role: str | None = None
    old_name: str | None = Field(default=None, description="`mailbox.renamed` only.")


class OutboxChanged(BaseModel):
    """A message being sent changed status (see `GET /api/outbox/{id}`)."""

    outbox_id: uuid.UUID
    status: str
    message_id: str
    attempts: int
    smtp_code: int | None = None
    smtp_reply: str | None = None
    error: str | None = None
    next_attempt_at: datetime | None = None
    bounce_status: str | None = Field(default=None, description="`outbox.bounced`: e.g. `5.1.1`.")
    bounce_diagnostic: str | None = None
    bounced_recipients: list[str] | None = Field(
        default=None, description="`outbox.bounced`: the recipients reported as failed."
    )


class AccountChanged(BaseModel):
    """An account was registered, changed or deleted."""

    account_id: uuid.UUID
    email: str
    state: str


class AccountStateChanged(BaseModel):
    """The account's connection state changed; `error` says why for
    `auth_error` and `connect_error`."""

    account_id: uuid.UUID
    state: str
    previous_state: str | None = None
    error: str | None = None


class SyncCompleted(BaseModel):
    """A sync pass of the account ended."""

    account_id: uuid.UUID
    new_messages: int
    updated: int
    deleted: int


class AccountIndexed(BaseModel):
    """The account's first mirror is complete and every message of it is searchable."""

    account_id: uuid.UUID
    messages_indexed: int = Field(description="The account's messages at that moment.")


class _Event(BaseModel):
    id: str = Field(
        description="The event's position in the feed: pass it as `since` (feed) or "
        "`Last-Event-ID` (SSE) to go on after it. Also the webhook delivery's event id."
    )
    account_id: uuid.UUID
    seq: int = Field(description="Per account, gap-free and increasing.")
    created_at: datetime


class MessageCreatedEvent(_Event):
    type: Literal["message.created"]
    data: MessageCreated


class MessageUpdatedEvent(_Event):
    type: Literal["message.updated"]
    data: MessageUpdated


class MessageDeletedEvent(_Event):
    type: Literal["message.deleted"]
    data: MessageDeleted


class MailboxEvent(_Event):
    type: Literal["mailbox.created", "mailbox.deleted", "mailbox.renamed"]
    data: MailboxChanged


OutboxEventType = Literal[
    "outbox.queued",
    "outbox.sending",
    "outbox.sent",
    "outbox.failed",
    "outbox.cancelled",
    "outbox.bounced",
]


class OutboxEvent(_Event):
    type: OutboxEventType
    data: OutboxChanged


class AccountEvent(_Event):
    type: Literal["account.created", "account.updated", "account.deleted"]
    data: AccountChanged


class AccountStateEvent(_Event):
    type: Literal["account.state_changed"]
    data: AccountStateChanged


class SyncCompletedEvent(_Event):
    type: Literal["sync.completed"]
    data: SyncCompleted


class AccountIndexedEvent(_Event):
    type: Literal["account.indexed"]
    data: AccountIndexed


Event = Annotated[
    MessageCreatedEvent
    | MessageUpdatedEvent
    | MessageDeletedEvent
    | MailboxEvent
    | OutboxEvent
    | AccountEvent
    | AccountStateEvent
    | SyncCompletedEvent
    | AccountIndexedEvent,
    Field(discriminator="type"),
]
# Every `type` value, read off the union so that a new event model is listed by itself.
EVENT_TYPES: tuple[str, ...] = tuple(
    value
    for model in get_args(get_args(Event)[0])
    for value in get_args(model.model_fields["type"].annotation)
)
_EVENT = TypeAdapter(Event)


# `encode_position`'s output, or "0". 18 digits stay inside PostgreSQL's bigint, which
# holds every transaction id and change id the feed will ever issue.
FEED_CURSOR_PATTERN = r"^(0|[0-9]{1,18}-[0-9]{1,18})$"


def encode_position(position: FeedPosition) -> str:
    return f"{position.txid}-{position.id}"


def decode_position(value: str) -> FeedPosition:
    """A position from `encode_position` (or "0": the start); ValueError otherwise."""
    if value == "0":
        return FeedPosition(0, 0)
    txid, separator, change_id = value.partition("-")
    if not separator or not txid.isdigit() or not change_id.isdigit() or len(value) > 40:
        raise ValueError("not a feed position")
    return FeedPosition(int(txid), int(change_id))


def event_from_change(change: Change) -> Event:
    """The API body of a stored change."""
    event: Event = _EVENT.validate_python(
        {
            "id": encode_position(FeedPosition(change.txid, change.id)),
            "type": change.type,
            "account_id": change.account_id,
            "seq": change.seq,
            "created_at": change.created_at,
            "data": change.payload,
        }
    )
    return event


def event_json(event: Event) -> bytes:
    return _EVENT.dump_json(event)
