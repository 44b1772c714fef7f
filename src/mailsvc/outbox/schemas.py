"""Outbox API bodies: what to send, and how far a send has got."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool

OutboxStatus = Literal["queued", "sending", "sent", "failed", "cancelled", "bounced"]


class AddressIn(BaseModel):
    """A recipient or sender: an address with an optional display name."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, max_length=256, examples=["Zoë Ådne"])
    address: str = Field(max_length=320, examples=["zoe@example.com"])


class AttachmentIn(BaseModel):
    """A file to attach, base64-encoded (drafts also take multipart uploads)."""

    model_config = ConfigDict(extra="forbid")

    filename: str = Field(max_length=255, examples=["report.pdf"])
    content_type: str = Field(default="application/octet-stream", max_length=255)
    content_base64: str = Field(description="The file's bytes, base64 (standard alphabet).")
    content_id: str | None = Field(
        default=None,
        max_length=250,
        description="Makes it an inline part that the HTML body references as `cid:...`.",
    )


class MessageFields(BaseModel):
    """The content of a message to send: shared by drafts and direct sends."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    account_id: uuid.UUID = Field(description="The account that sends (its SMTP server).")
    from_: AddressIn | None = Field(
        default=None,
        alias="from",
        description="The account's address or one of its `send_options.aliases`; "
        "null sends as the account with its display name.",
    )
    to: list[AddressIn] = Field(default_factory=list, max_length=1000)
    cc: list[AddressIn] = Field(default_factory=list, max_length=1000)
    bcc: list[AddressIn] = Field(
        default_factory=list, max_length=1000, description="Envelope only: never in a header."
    )
    reply_to: list[AddressIn] = Field(default_factory=list, max_length=20)
    subject: str | None = Field(default=None, max_length=1000)
    text: str | None = Field(default=None, description="The text/plain body.")
    html: str | None = Field(default=None, description="The text/html body.")
    headers: dict[str, str] = Field(
        default_factory=dict,
        description="Extra headers from an allow-list: `X-*`, `List-Unsubscribe`, "
        "`List-Unsubscribe-Post`, `Auto-Submitted`, `Precedence`, `Importance`, ... "
        "(docs/sending.md). No header value may hold CR or LF.",
    )
    in_reply_to: uuid.UUID | None = Field(
        default=None,
        description="A message id of ours to reply to: sets In-Reply-To, References and "
        "a `Re:` subject when none is given; the original is flagged answered once sent.",
    )
    # StrictBool: the schema says boolean, so 0/1 and "true" are refused, not coerced.
    quote_original: StrictBool = Field(
        default=False, description="Replies: quote the original below the new text."
    )
    forward_of: uuid.UUID | None = Field(
        default=None, description="A message id of ours to forward (attached as message/rfc822)."
    )
    forward_inline: StrictBool = Field(
        default=False, description="Forward the original's text inline instead of attached."
    )


class SendRequest(MessageFields):
    """Send a message now, or at `send_at`, without a draft."""

    attachments: list[AttachmentIn] = Field(default_factory=list, max_length=100)
    send_at: datetime | None = Field(
        default=None, description="Send at this time instead of at once (timezone required)."
    )


class ScheduleRequest(BaseModel):
    """When to send a draft; empty to send it at once."""

    model_config = ConfigDict(extra="forbid")

    send_at: datetime | None = None


class OutboxOut(BaseModel):
    """A message being sent, or sent: its status and the SMTP server's last word."""

    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    account_id: uuid.UUID
    draft_id: uuid.UUID | None
    status: OutboxStatus = Field(
        description="`queued` (waiting for its time or a retry), `sending`, `sent`, "
        "`failed` (a 5xx reply or too many attempts), `cancelled`, `bounced` (a delivery "
        "status notification reported a failure after the server accepted it)."
    )
    subject: str | None
    message_id: str = Field(description="The Message-ID header, generated once, with `<>`.")
    envelope_from: str
    envelope_to: list[str]
    send_at: datetime | None
    next_attempt_at: datetime | None = Field(
        description="When the next attempt is due; null once the send has ended."
    )
    attempts: int
    max_attempts: int
    last_attempt_at: datetime | None
    last_smtp_code: int | None
    last_smtp_reply: str | None = Field(description="The SMTP server's last reply text.")
    last_error: str | None = Field(description="A failure without an SMTP reply (connection, TLS).")
    sent_at: datetime | None
    sent_copy_saved: bool = Field(description="The copy is in the Sent mailbox.")
    bounce_status: str | None = Field(description="From a bounce: the status code, e.g. `5.1.1`.")
    bounce_diagnostic: str | None
    created_at: datetime
    updated_at: datetime


class OutboxPage(BaseModel):
    """One page of the outbox, newest first; pass `next_cursor` as `cursor` for more."""

    items: list[OutboxOut]
    next_cursor: str | None = None
