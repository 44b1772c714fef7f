"""Webhook API bodies (they become the OpenAPI schema)."""

from __future__ import annotations

import re
import uuid
from datetime import datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictBool

from mailsvc.event.schemas import EVENT_TYPES
from mailsvc.kit.fields import PRINTABLE_DESCRIPTION, PRINTABLE_PATTERN, check_printable
from mailsvc.webhook.target import MAX_URL_LENGTH, parse_target

DeliveryStatus = Literal["pending", "delivering", "succeeded", "failed"]


# What target.parse_target accepts, as a pattern (a conservative one: ASCII only): the
# server holds URLs to it too. http(s), a host name or IP literal, no credentials, no fragment,
# no spaces or control characters, only what RFC 3986 allows in a path and query (so
# the pattern stays inside `format: uri`). Whether the host is allowed is checked on save.
URL_PATTERN = (
    r"^https?://([A-Za-z0-9._~-]+|\[[0-9A-Fa-f:.]+\])(:[0-9]{1,5})?"
    r"([/?]([A-Za-z0-9._~!$&'()*+,;=:@/?-]|%[0-9A-Fa-f]{2})*)?$"
)
# RFC 3986's characters; urlsplit takes anything, and the schema says `format: uri`.
_URI = re.compile(r"([A-Za-z0-9._~!$&'()*+,;=:@/?#\[\]-]|%[0-9A-Fa-f]{2})*")


_DOCUMENTED = re.compile(URL_PATTERN)


def _check_url(value: str) -> str:
    parse_target(value)
    if not _URI.fullmatch(value):
        raise ValueError("must be a URI: percent-encode other characters (RFC 3986)")
    # What the schema promises generated clients: a host name of letters, digits and
    # `.-_~`, or an IP literal (urlsplit alone lets `*` and other sub-delimiters in).
    if not _DOCUMENTED.fullmatch(value):
        raise ValueError("must be an http(s) URL with a plain host name and an optional port")
    return value


def _check_event_types(values: list[str]) -> list[str]:
    unknown = sorted({value for value in values if value not in EVENT_TYPES})
    if unknown:
        raise ValueError(
            f"unknown event type(s) {', '.join(unknown)}; known: {', '.join(EVENT_TYPES)}"
        )
    # Each once, in the documented order.
    return [event_type for event_type in EVENT_TYPES if event_type in values]


WebhookUrl = Annotated[
    str,
    Field(
        min_length=1,
        max_length=MAX_URL_LENGTH,
        description="Where to POST events: an https URL whose host resolves to public "
        "addresses only (checked on save and before every delivery). No credentials in "
        "it: the signature authenticates each request.",
        examples=["https://app.example.com/hooks/mailsvc"],
        json_schema_extra={"format": "uri", "pattern": URL_PATTERN},
    ),
    AfterValidator(_check_url),
]
EventTypes = Annotated[
    list[str],
    Field(
        default_factory=list,
        max_length=len(EVENT_TYPES),
        description="Event types to deliver; empty delivers every type.",
        json_schema_extra={"items": {"type": "string", "enum": list(EVENT_TYPES)}},
        examples=[["message.created", "message.deleted"]],
    ),
    AfterValidator(_check_event_types),
]


# Stored as text: a NUL, which PostgreSQL refuses, or another control character in
# it would be a 500 or garbage in whatever shows it.
WebhookDescription = Annotated[
    str,
    Field(
        max_length=500,
        description=PRINTABLE_DESCRIPTION,
        json_schema_extra={"pattern": PRINTABLE_PATTERN},
    ),
    AfterValidator(check_printable),
]


class WebhookIn(BaseModel):
    """A webhook's settings."""

    model_config = ConfigDict(extra="forbid")

    url: WebhookUrl
    event_types: EventTypes
    description: WebhookDescription | None = Field(default=None, examples=["CRM sync"])
    # StrictBool: the schema says boolean, so 0/1 and "true" are refused, not coerced.
    active: StrictBool = Field(
        default=True,
        description="Inactive webhooks receive nothing; their events wait, and are "
        "delivered in order once the webhook is active again.",
    )


class WebhookCreate(WebhookIn):
    """Register an endpoint for the tenant's events. The answer holds the signing
    secret, once."""


class WebhookUpdate(WebhookIn):
    """Replace a webhook's settings. `active: true` re-enables a disabled webhook and
    clears its failure count; the signing secret stays."""


class WebhookOut(BaseModel):
    """A registered webhook. The signing secret is never part of it."""

    id: uuid.UUID
    url: str
    event_types: list[str] = Field(description="Empty: every type.")
    description: str | None
    active: bool
    disabled_reason: str | None = Field(
        description="Why mailsvc disabled the webhook (deliveries kept failing)."
    )
    failure_count: int = Field(description="Deliveries given up in a row; reset by a success.")
    created_at: datetime
    updated_at: datetime


class WebhookCreated(WebhookOut):
    """The new webhook with its signing secret: store it now, it is never shown again."""

    secret: str = Field(
        description="`whsec_` and the base64 of the HMAC-SHA256 key that signs every "
        "request (`Webhook-Signature`, the Standard Webhooks scheme; docs/events.md).",
        examples=["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"],
    )


class WebhookPage(BaseModel):
    """One page of webhooks, oldest first; pass `next_cursor` as `cursor` for the next."""

    items: list[WebhookOut]
    next_cursor: str | None = None


class DeliveryOut(BaseModel):
    """One event's delivery to a webhook, with the outcome of its latest attempt."""

    id: uuid.UUID = Field(description="Sent as `Webhook-Id`; the same on every retry.")
    event_id: str = Field(description="The event's `id` (its change feed position).")
    event_type: str
    account_id: uuid.UUID
    seq: int = Field(description="The event's per-account sequence number.")
    change_id: int
    status: DeliveryStatus = Field(
        description="`pending` (waiting for its turn or a retry), `delivering`, "
        "`succeeded`, or `failed` (given up after the last attempt)."
    )
    attempts: int
    next_attempt_at: datetime | None = Field(description="When a pending delivery goes next.")
    last_status_code: int | None = Field(description="The receiver's last HTTP status.")
    last_error: str | None = Field(description="Why the last attempt failed.")
    last_duration_ms: int | None = Field(
        description="How long the last attempt took, in milliseconds: from sending the "
        "request until the receiver's answer, or until it failed (a timeout, a refused "
        "or dropped connection). Null before the first attempt, and when no request "
        "was made (the URL's host was not allowed).",
        examples=[84],
    )
    delivered_at: datetime | None
    created_at: datetime


class DeliveryPage(BaseModel):
    """One page of deliveries, newest first; pass `next_cursor` as `cursor` for more."""

    items: list[DeliveryOut]
    next_cursor: str | None = None


class WebhookTestResult(BaseModel):
    """What the receiver answered to a signed `webhook.test` request."""

    delivered: bool = Field(description="The receiver answered 2xx.")
    status_code: int | None = Field(description="Its HTTP status; null without an answer.")
    error: str | None = Field(description="Why it was not delivered.")
    delivery_id: str = Field(description="The `Webhook-Id` header the request carried.")
    duration_ms: int | None = Field(
        description="Milliseconds until the receiver's answer, or until the request "
        "failed (a timeout, a refused connection); null when no request was made.",
        examples=[84],
    )
