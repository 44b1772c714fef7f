"""Account request and response bodies (they become the OpenAPI schema)."""

from __future__ import annotations

import re
import uuid
from datetime import datetime
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    StrictBool,
)

from mailsvc.kit.addresses import EmailAddress
from mailsvc.kit.datetimes import RFC3339Date
from mailsvc.kit.mailserver import Security

# Matched with fullmatch: `$` would also match before a final newline, letting
# "abc\n" through while the schema's pattern (ECMA `$`: the very end) refuses it.
_HOSTNAME = re.compile(
    r"(?=.{1,253}\Z)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?"
)
# IPv4 addresses are hostnames by the rule above (digit labels); a separate digits-and-
# dots rule would only add empty labels (".0.1"), which name resolution cannot encode.
_IP_LITERAL = re.compile(r"[0-9A-Fa-f:]+")
# _check_host's rule as an OpenAPI pattern (the 253-character bound is maxLength).
HOST_PATTERN = (
    r"^([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?"
    r"|[0-9A-Fa-f:]{1,45})$"
)


def _check_host(value: str) -> str:
    if not (_HOSTNAME.fullmatch(value) or (_IP_LITERAL.fullmatch(value) and len(value) <= 45)):
        raise ValueError("must be a hostname or an IP address")
    return value.lower()


def _check_printable(value: str) -> str:
    # CR/LF would let a value smuggle extra header lines into IMAP commands or mail.
    if any(not ch.isprintable() for ch in value):
        raise ValueError("must not contain control characters")
    return value


# _check_printable's rule, as far as a portable pattern can say it: no C0 or C1 control
# character. Python's printable also excludes format, separator and unassigned
# characters, which the descriptions state in words.
PRINTABLE_PATTERN = r"^[^\x00-\x1f\x7f-\x9f]*$"
_PRINTABLE = (
    "Printable text: no control, format, private-use or unassigned characters, and no "
    "separator but the space."
)

# kit.addresses refuses an address above 254 characters (RFC 5321's path limit).
AccountAddress = Annotated[
    EmailAddress, Field(max_length=254, json_schema_extra={"format": "email"})
]
Host = Annotated[
    str,
    Field(min_length=1, max_length=253, json_schema_extra={"pattern": HOST_PATTERN}),
    AfterValidator(_check_host),
]
Username = Annotated[
    str,
    Field(
        min_length=1,
        max_length=320,
        description=_PRINTABLE,
        json_schema_extra={"pattern": PRINTABLE_PATTERN},
    ),
    AfterValidator(_check_printable),
]
Password = Annotated[SecretStr, Field(min_length=1, max_length=4096)]


def _refuse_non_integers(value: object) -> object:
    # Lax int would take `true` and "993"; the schema's `integer` takes neither (it
    # does take 993.0, which lax int turns into 993, so StrictInt would be too strict).
    if isinstance(value, bool | str):
        raise ValueError("must be a JSON integer")
    return value


# After the bounds, so they stay on the integer's schema (`minimum`, `maximum`).
_JSON_INTEGER = BeforeValidator(_refuse_non_integers)
Port = Annotated[int, Field(ge=1, le=65535), _JSON_INTEGER]


class ServerIn(BaseModel):
    """How to log in to one server (IMAP or SMTP)."""

    model_config = ConfigDict(extra="forbid")

    host: Host = Field(examples=["imap.example.com"])
    port: Port = Field(examples=[993])
    security: Security = Field(
        default=Security.TLS,
        description="`tls`: implicit TLS; `starttls`: upgrade a plain connection; "
        "`none`: no encryption (trusted networks only).",
    )
    username: Username = Field(examples=["ada@example.com"])
    password: Password = Field(description="Stored encrypted; never returned.")


class ServerUpdate(ServerIn):
    """Like `ServerIn`; omit `password` to keep the stored one."""

    password: Password | None = Field(  # type: ignore[assignment]
        default=None, description="New password; omit to keep the current one."
    )


class ServerOut(BaseModel):
    """A server's settings as stored, without the secret."""

    host: str
    port: int
    security: Security
    username: str


MailboxName = Annotated[
    str,
    Field(
        min_length=1,
        max_length=1000,
        description=_PRINTABLE,
        json_schema_extra={"pattern": PRINTABLE_PATTERN},
    ),
    AfterValidator(_check_printable),
]
DisplayName = Annotated[
    str,
    Field(max_length=200, description=_PRINTABLE, json_schema_extra={"pattern": PRINTABLE_PATTERN}),
    AfterValidator(_check_printable),
]


class SyncOptions(BaseModel):
    """What of the account to mirror. Mailboxes are named by path or by role
    (`inbox`, `sent`, `drafts`, `trash`, `junk`, `archive`, `all`, `flagged`)."""

    model_config = ConfigDict(extra="forbid")

    since: RFC3339Date | None = Field(
        default=None, description="Initial sync: only messages received on or after this day."
    )
    max_messages_per_mailbox: Annotated[int, Field(ge=0), _JSON_INTEGER] | None = Field(
        default=None, description="Initial sync: only the newest N messages per mailbox."
    )
    include_mailboxes: list[MailboxName] | None = Field(
        default=None, max_length=1000, description="Only these mailboxes (all when null)."
    )
    exclude_mailboxes: list[MailboxName] = Field(default_factory=list, max_length=1000)
    idle_mailboxes: list[MailboxName] | None = Field(
        default=None,
        max_length=15,
        description="Mailboxes watched in real time with IMAP IDLE (default: inbox and sent).",
    )
    # StrictBool: the schema says boolean, so 0/1 and "true" are refused, not coerced.
    events_for_existing: StrictBool = Field(
        default=False,
        description="Raise `message.created` for mail already there at the first sync.",
    )


class SendOptions(BaseModel):
    """How the account sends."""

    model_config = ConfigDict(extra="forbid")

    aliases: list[AccountAddress] = Field(
        default_factory=list,
        max_length=100,
        description="Other addresses this account may send as (`from`).",
    )
    sent_copy: Literal["append", "provider"] = Field(
        default="append",
        description="`append`: mailsvc saves each sent message to the Sent mailbox; "
        "`provider`: the SMTP server files it there itself (Gmail, Outlook), so it is "
        "not appended twice.",
    )
    # StrictBool: the schema says boolean, so 0/1 and "true" are refused, not coerced.
    save_drafts: StrictBool = Field(
        default=False, description="Also keep drafts in the account's Drafts mailbox."
    )


class AccountCreate(BaseModel):
    """Register a mailbox account; its IMAP and SMTP logins are checked first."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "email": "ada@example.com",
                    "display_name": "Ada Lovelace",
                    "imap": {
                        "host": "imap.example.com",
                        "port": 993,
                        "security": "tls",
                        "username": "ada@example.com",
                        "password": "app-password",
                    },
                    "smtp": {
                        "host": "smtp.example.com",
                        "port": 465,
                        "security": "tls",
                        "username": "ada@example.com",
                        "password": "app-password",
                    },
                }
            ]
        },
    )

    email: AccountAddress = Field(examples=["ada@example.com"])
    display_name: DisplayName | None = None
    imap: ServerIn
    smtp: ServerIn
    sync_options: SyncOptions = Field(default_factory=SyncOptions)
    send_options: SendOptions = Field(default_factory=SendOptions)


class AccountUpdate(BaseModel):
    """Replace an account's settings; passwords left out stay as they are."""

    model_config = ConfigDict(extra="forbid")

    email: AccountAddress = Field(examples=["ada@example.com"])
    display_name: DisplayName | None = None
    imap: ServerUpdate
    smtp: ServerUpdate
    sync_options: SyncOptions = Field(default_factory=SyncOptions)
    send_options: SendOptions = Field(default_factory=SendOptions)


AccountState = Literal["connecting", "connected", "auth_error", "connect_error", "disabled"]


class AccountOut(BaseModel):
    """A registered account. Credentials are never part of it."""

    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    email: str
    display_name: str | None
    imap: ServerOut
    smtp: ServerOut
    sync_options: SyncOptions
    send_options: SendOptions
    state: AccountState = Field(description="Connection state of the account's IMAP session.")
    last_error: str | None = Field(description="Why the last connection attempt failed.")
    last_error_at: datetime | None
    created_at: datetime
    updated_at: datetime


class AccountPage(BaseModel):
    """One page of accounts, oldest first; pass `next_cursor` as `cursor` for the next."""

    items: list[AccountOut]
    next_cursor: str | None = None
