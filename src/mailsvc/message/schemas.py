"""Message API bodies: summaries for lists, full messages, and changes to them."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StringConstraints
from pydantic.config import JsonDict

SortOrder = Literal["newest", "oldest", "relevance"]
# A mailbox query parameter: a mailbox id or a role (models.mailbox.MAILBOX_ROLES).
MAILBOX_PATTERN = (
    r"^([0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
    r"|inbox|sent|drafts|trash|junk|archive|all|flagged)$"
)
# Free text that reaches PostgreSQL, which stores no NUL character in text.
TEXT_PATTERN = r"^[^\x00]*$"
# An IMAP keyword as the server accepts it (message.actions checks it, answering
# `invalid_keyword`): an atom without the characters IMAP reserves.
KEYWORD_PATTERN = r"^[A-Za-z0-9$_.\-+&~!@#^'`|]{1,64}$"
_KEYWORDS_SCHEMA: JsonDict = {"items": {"type": "string", "pattern": KEYWORD_PATTERN}}


def _requires(field: str, schema: JsonDict) -> JsonDict:
    """A JSON Schema branch: `field` is present and matches `schema`."""
    return {"required": [field], "properties": {field: schema}}


MoveRole = Literal["inbox", "archive", "trash", "junk", "sent", "drafts"]


class AddressOut(BaseModel):
    """A mailbox address with its display name, as the header gave them."""

    name: str | None = None
    address: str


class MessageSummary(BaseModel):
    """What a message list shows of each message."""

    id: uuid.UUID
    account_id: uuid.UUID
    mailbox_id: uuid.UUID
    thread_id: uuid.UUID | None
    subject: str | None
    from_: AddressOut | None = Field(
        alias="from", description="The first From address (a header may hold several)."
    )
    to: list[AddressOut]
    cc: list[AddressOut]
    snippet: str | None = Field(description="The start of the text body, whitespace folded.")
    date: datetime | None = Field(description="The Date header; null when missing or invalid.")
    received_at: datetime = Field(
        description="When the server received it (IMAP INTERNALDATE); lists sort on this."
    )
    flags: list[str] = Field(description="IMAP flags and keywords, e.g. `\\Seen`, `$Forwarded`.")
    labels: list[str] | None = Field(
        default=None,
        description="Gmail labels (X-GM-LABELS), sorted: system labels with their "
        "backslash (`\\Inbox`, `\\Important`, `\\Sent`), user labels by name "
        "(`Work`, `Clients/Acme`). Null on servers other than Gmail.",
        examples=[["\\Important", "\\Inbox", "Work"]],
    )
    unread: bool
    flagged: bool
    has_attachments: bool
    size: int = Field(description="Size of the RFC 822 source in octets.")
    highlight: str | None = Field(
        default=None,
        description="Search results only: HTML-escaped excerpts of the body with the "
        "matching words in `<mark>`.",
    )

    model_config = ConfigDict(populate_by_name=True, serialize_by_alias=True)


class MessagePage(BaseModel):
    """One page of messages; pass `next_cursor` as `cursor` for the next one."""

    items: list[MessageSummary]
    next_cursor: str | None = Field(
        default=None, description="Null on the last page. Opaque; valid for the same filters."
    )


class AttachmentOut(BaseModel):
    """An attachment or inline part; its content streams from the mail server."""

    id: uuid.UUID
    filename: str | None
    content_type: str
    size: int = Field(description="Encoded size on the server, in octets.")
    content_id: str | None = Field(description="For `cid:` references in the HTML body.")
    inline: bool
    download_url: str


class MessageOut(MessageSummary):
    """A whole message: headers, bodies (HTML sanitized for display) and attachments."""

    message_id: str | None = Field(description="The Message-ID header, without `<>`.")
    in_reply_to: str | None
    references: list[str]
    sender: list[AddressOut]
    reply_to: list[AddressOut]
    bcc: list[AddressOut]
    from_all: list[AddressOut] = Field(description="Every From address.")
    text_body: str | None = Field(
        description="From the text/plain part, or converted from HTML when there is none."
    )
    html_body: str | None = Field(
        description="Sanitized: no scripts, event handlers, forms or frames; remote "
        "images removed unless `allow_remote=true`; `cid:` images point at "
        "`download_url`s."
    )
    remote_content_blocked: bool = Field(
        description="True when the HTML referenced remote content that was removed."
    )
    reply_text: str | None = Field(
        description="The new text of this message alone: without the quoted history "
        "and the signature."
    )
    attachments: list[AttachmentOut]
    parse_error: str | None = Field(
        description="Set when the message was malformed; the rest holds what could be read."
    )
    gmail_message_id: str | None = Field(
        default=None,
        description="Gmail's X-GM-MSGID (a decimal string): the same message in All "
        "Mail, Spam or Trash has the same one. Null on other servers.",
        examples=["1278455344230334865"],
    )
    gmail_thread_id: str | None = Field(
        default=None,
        description="Gmail's X-GM-THRID (a decimal string); `thread_id` groups by it. "
        "Null on other servers.",
        examples=["1266894439832287888"],
    )


class FlagsUpdate(BaseModel):
    """Flags to set or clear; fields left out are not changed. At least one flag
    (`true` or `false`) or one keyword is needed: a change of nothing is refused
    (`empty_update`)."""

    model_config = ConfigDict(
        extra="forbid",
        # message.actions.flag_changes refuses an update that changes nothing; the
        # schema says so, so clients and fuzzers see the rule instead of a surprise 422.
        json_schema_extra={
            "anyOf": [
                *(_requires(flag, {"type": "boolean"}) for flag in ("seen", "flagged", "answered")),
                *(
                    _requires(keywords, {"minItems": 1})
                    for keywords in ("add_keywords", "remove_keywords")
                ),
            ]
        },
    )

    # StrictBool: the schema says boolean, so 0/1 and "true" are refused, not coerced.
    seen: StrictBool | None = Field(default=None, description="Read (`\\Seen`).")
    flagged: StrictBool | None = Field(default=None, description="Starred (`\\Flagged`).")
    answered: StrictBool | None = Field(default=None, description="`\\Answered`.")
    add_keywords: list[str] = Field(
        default_factory=list,
        max_length=20,
        description="Custom keywords to add, e.g. `$Label1` (atoms: no spaces, "
        "parentheses, quotes, `%`, `*`, `\\` or `]`).",
        json_schema_extra=_KEYWORDS_SCHEMA,
    )
    remove_keywords: list[str] = Field(
        default_factory=list, max_length=20, json_schema_extra=_KEYWORDS_SCHEMA
    )


class MoveRequest(BaseModel):
    """Where to move messages: exactly one of a mailbox id or a role of the same
    account (`invalid_destination` otherwise)."""

    model_config = ConfigDict(
        extra="forbid",
        # message.actions refuses neither and both; null counts as left out.
        json_schema_extra={
            "anyOf": [
                {
                    "required": ["mailbox_id"],
                    "properties": {
                        "mailbox_id": {"type": "string", "format": "uuid"},
                        "role": {"type": "null"},
                    },
                },
                {
                    "required": ["role"],
                    "properties": {
                        "role": {"type": "string", "enum": list(get_args(MoveRole))},
                        "mailbox_id": {"type": "null"},
                    },
                },
            ]
        },
    )

    mailbox_id: uuid.UUID | None = None
    role: MoveRole | None = None


# A Gmail label as the API takes it: no control characters (CR, LF and NUL cannot be
# sent in an IMAP string), 1 to 225 characters as Gmail allows.
LABEL_PATTERN = r"^[^\x00-\x1f\x7f]{1,225}$"
Label = Annotated[str, StringConstraints(pattern=LABEL_PATTERN)]


class LabelsUpdate(BaseModel):
    """Gmail labels to add to and remove from a message, as `labels` names them:
    system labels with their backslash (`\\Inbox`, `\\Starred`, `\\Important`),
    user labels by name. At least one label is needed (`empty_update`)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "anyOf": [_requires(side, {"minItems": 1}) for side in ("add", "remove")],
            "examples": [{"add": ["Work"], "remove": ["\\Inbox"]}],
        },
    )

    add: list[Label] = Field(
        default_factory=list,
        max_length=50,
        description="Labels to add.",
    )
    remove: list[Label] = Field(
        default_factory=list,
        max_length=50,
        description="Labels to remove (removing `\\Inbox` archives the message).",
    )


class BulkIds(BaseModel):
    """Messages to act on together (any accounts and mailboxes of the tenant)."""

    model_config = ConfigDict(extra="forbid")

    ids: list[uuid.UUID] = Field(min_length=1, max_length=500)


class BulkFlagsUpdate(BulkIds):
    """Flags to change on many messages."""

    flags: FlagsUpdate


class BulkMove(BulkIds):
    """Messages to move to one mailbox (all of them must belong to its account)."""

    to: MoveRequest


class BulkResult(BaseModel):
    """What a bulk action did: every id is in exactly one list."""

    done: list[uuid.UUID]
    not_found: list[uuid.UUID] = Field(
        description="Unknown ids, or messages already gone from the server."
    )
