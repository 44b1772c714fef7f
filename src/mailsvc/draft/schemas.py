"""Draft API bodies: what a draft holds, and what the API shows of it."""

from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field, JsonValue

from mailsvc.outbox.schemas import AddressIn, MessageFields

_EXAMPLE: dict[str, JsonValue] = {
    "account_id": "0192f5d1-6c1e-7a55-9d0c-1f2a3b4c5d6e",
    "to": [{"name": "Zoë Ådne", "address": "zoe@example.com"}],
    "subject": "Quarterly report",
    "text": "Hello Zoë,\n\nthe report is attached.\n",
}


class DraftIn(MessageFields):
    """A draft's content. Everything but `account_id` may be left out: a draft can be
    unfinished (no recipients yet). Each given value is checked when saved; the whole
    message (recipients included) is checked when it is sent."""

    model_config = ConfigDict(json_schema_extra={"examples": [_EXAMPLE]})

    bcc: list[AddressIn] = Field(
        default_factory=list,
        max_length=1000,
        description="Envelope only: never in a header (nor in the Drafts mailbox copy).",
    )
    in_reply_to: uuid.UUID | None = Field(
        default=None,
        description="A message id of ours (same account) that this draft answers. Its "
        "Message-ID and References are copied into the draft when saved, so the reply "
        "keeps its threading even if the original is later removed from the mirror.",
    )


class DraftSave(DraftIn):
    """A draft to save: with `id`, replaces that draft's content; without, creates one."""

    model_config = ConfigDict(json_schema_extra={"examples": [{**_EXAMPLE, "id": None}]})

    id: uuid.UUID | None = Field(default=None, description="The draft to update; null creates.")


class DraftAttachmentOut(BaseModel):
    """An attachment of a draft (its content is kept with the draft, not returned)."""

    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    filename: str
    content_type: str = Field(examples=["application/pdf"])
    size: int = Field(description="Size of the file in octets.")
    content_id: str | None = Field(
        description="Set for an inline part that the HTML body references as `cid:...`."
    )


class DraftOut(BaseModel):
    """A saved draft with its attachments."""

    model_config = ConfigDict(populate_by_name=True, serialize_by_alias=True)

    id: uuid.UUID
    account_id: uuid.UUID
    from_: AddressIn | None = Field(alias="from")
    to: list[AddressIn]
    cc: list[AddressIn]
    bcc: list[AddressIn]
    reply_to: list[AddressIn]
    subject: str | None
    text: str | None
    html: str | None
    headers: dict[str, str]
    in_reply_to: uuid.UUID | None = Field(
        description="The message answered; null also once that message left the mirror "
        "(the copied threading headers stay with the draft)."
    )
    quote_original: bool
    forward_of: uuid.UUID | None
    forward_inline: bool
    attachments: list[DraftAttachmentOut]
    created_at: datetime
    updated_at: datetime


class DraftPage(BaseModel):
    """One page of drafts, newest first; pass `next_cursor` as `cursor` for the next."""

    items: list[DraftOut]
    next_cursor: str | None = Field(
        default=None, description="Null on the last page. Opaque; valid for the same filter."
    )
