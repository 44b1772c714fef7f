"""Account request and response bodies (they become the OpenAPI schema)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    StrictBool,
)
from pydantic.config import JsonDict

from mailsvc.kit.datetimes import RFC3339Date
from mailsvc.kit.fields import (
    JSON_INTEGER,
    PRINTABLE_DESCRIPTION,
    PRINTABLE_PATTERN,
    AccountAddress,
    Host,
    HttpUrl,
    Password,
    Port,
    Username,
    check_printable,
)
from mailsvc.kit.mailserver import Security


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
        description=PRINTABLE_DESCRIPTION,
        json_schema_extra={"pattern": PRINTABLE_PATTERN},
    ),
    AfterValidator(check_printable),
]
DisplayName = Annotated[
    str,
    Field(
        max_length=200,
        description=PRINTABLE_DESCRIPTION,
        json_schema_extra={"pattern": PRINTABLE_PATTERN},
    ),
    AfterValidator(check_printable),
]


class SyncOptions(BaseModel):
    """What of the account to mirror. Mailboxes are named by path or by role
    (`inbox`, `sent`, `drafts`, `trash`, `junk`, `archive`, `all`, `flagged`)."""

    model_config = ConfigDict(extra="forbid")

    since: RFC3339Date | None = Field(
        default=None, description="Initial sync: only messages received on or after this day."
    )
    max_messages_per_mailbox: Annotated[int, Field(ge=0), JSON_INTEGER] | None = Field(
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


Token = Annotated[SecretStr, Field(min_length=1, max_length=16384)]

# How an account logs in, in the schema (a null counts as left out): passwords in
# `imap` and `smtp`, or OAuth2 tokens in `auth`, never both. Said with if/then/else,
# which generated SDKs ignore, rather than anyOf, which they turn into union types.
_OBJECT: JsonDict = {"type": "object"}
_NULL: JsonDict = {"type": "null"}
_WITH_TOKENS: JsonDict = {"required": ["auth"], "properties": {"auth": _OBJECT}}
_NO_SERVERS: JsonDict = {"properties": {"imap": _NULL, "smtp": _NULL}}
_BOTH_SERVERS: JsonDict = {
    "required": ["imap", "smtp"],
    "properties": {"imap": _OBJECT, "smtp": _OBJECT},
}
_CREATE_LOGIN: JsonDict = {"if": _WITH_TOKENS, "then": _NO_SERVERS, "else": _BOTH_SERVERS}
# An update may leave all three out: the account keeps how it logs in.
_UPDATE_LOGIN: JsonDict = {
    "if": _WITH_TOKENS,
    "then": _NO_SERVERS,
    "else": {
        "if": {"required": ["imap"], "properties": {"imap": _OBJECT}},
        "then": _BOTH_SERVERS,
        "else": {"properties": {"smtp": _NULL}},
    },
}


class OAuth2Credentials(BaseModel):
    """Tokens your application obtained itself through an OAuth2 app registered here
    (`/api/oauth-apps`). mailsvc refreshes the access token with the refresh token
    and the app's client secret from then on."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["oauth2"]
    app_id: uuid.UUID = Field(description="The OAuth2 app the tokens were issued to.")
    access_token: Token = Field(description="Stored encrypted; never returned.")
    refresh_token: Token | None = Field(
        default=None,
        description="Stored encrypted; never returned. Without it the account stops "
        "working when the access token expires.",
    )
    expires_at: datetime | None = Field(
        default=None,
        description="When the access token expires (RFC 3339); if unknown, it is used "
        "until a server refuses it.",
    )


class AccountCreate(BaseModel):
    """Register a mailbox account; its IMAP and SMTP logins are checked first.

    Give either `imap` and `smtp` with passwords, or `auth` with OAuth2 tokens (the
    servers then come from the OAuth2 app; the `email` is the login)."""

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
                },
                {
                    "email": "ada@gmail.com",
                    "auth": {
                        "type": "oauth2",
                        "app_id": "01938f2e-7c4a-7d41-9f0e-3b1c2d4e5f60",
                        "access_token": "ya29.a0Af...",
                        "refresh_token": "1//0gL...",
                        "expires_at": "2026-12-05T15:04:05Z",
                    },
                },
            ],
            **_CREATE_LOGIN,
        },
    )

    email: AccountAddress = Field(examples=["ada@example.com"])
    display_name: DisplayName | None = None
    imap: ServerIn | None = Field(default=None, description="Required unless `auth` is given.")
    smtp: ServerIn | None = Field(default=None, description="Required unless `auth` is given.")
    auth: OAuth2Credentials | None = Field(
        default=None, description="Log in with OAuth2 tokens instead of passwords."
    )
    sync_options: SyncOptions = Field(default_factory=SyncOptions)
    send_options: SendOptions = Field(default_factory=SendOptions)


class AccountUpdate(BaseModel):
    """Replace an account's settings; passwords or tokens left out stay as they are.

    A password account needs `imap` and `smtp`; an OAuth2 account takes new tokens in
    `auth` (which also releases it from `auth_error`). Giving the other kind switches
    the account's way of logging in."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=_UPDATE_LOGIN)

    email: AccountAddress = Field(examples=["ada@example.com"])
    display_name: DisplayName | None = None
    imap: ServerUpdate | None = None
    smtp: ServerUpdate | None = None
    auth: OAuth2Credentials | None = None
    sync_options: SyncOptions = Field(default_factory=SyncOptions)
    send_options: SendOptions = Field(default_factory=SendOptions)


AccountState = Literal["connecting", "connected", "auth_error", "connect_error", "disabled"]


class AccountOut(BaseModel):
    """A registered account. Credentials are never part of it."""

    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    email: str
    display_name: str | None
    auth_type: Literal["password", "oauth2"] = Field(
        description="How mailsvc logs in: with passwords, or with OAuth2 tokens."
    )
    oauth_app_id: uuid.UUID | None = Field(
        description="The OAuth2 app refreshing the account's tokens (OAuth2 accounts)."
    )
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


ClientState = Annotated[
    str,
    Field(
        min_length=1,
        max_length=500,
        description="Your own value, handed back as `state` on `return_url`. "
        + PRINTABLE_DESCRIPTION,
        json_schema_extra={"pattern": PRINTABLE_PATTERN},
    ),
    AfterValidator(check_printable),
]


class OAuthAuthorizeIn(BaseModel):
    """Start connecting a mailbox through an OAuth2 app's consent screen."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "app_id": "01938f2e-7c4a-7d41-9f0e-3b1c2d4e5f60",
                    "return_url": "https://app.example.com/mail/connected",
                    "state": "user-42",
                    "login_hint": "ada@gmail.com",
                }
            ]
        },
    )

    app_id: uuid.UUID = Field(description="The OAuth2 app (`/api/oauth-apps`) to consent to.")
    return_url: HttpUrl = Field(
        description="Where the user's browser goes when it is over, with `account_id` (or "
        "`error` and `error_description`) and your `state` in the query."
    )
    state: ClientState | None = None
    login_hint: AccountAddress | None = Field(
        default=None, description="The address to preselect on the consent screen."
    )
    account_id: uuid.UUID | None = Field(
        default=None,
        description="Reconnect this account (new tokens, e.g. after `auth_error`); its "
        "address must be the one consented with.",
    )
    display_name: DisplayName | None = None
    sync_options: SyncOptions = Field(default_factory=SyncOptions)
    send_options: SendOptions = Field(default_factory=SendOptions)


class OAuthAuthorizeOut(BaseModel):
    """Send the user's browser to `authorization_url`; the consent ends at `return_url`."""

    authorization_url: str
    expires_at: datetime = Field(description="The consent must be completed before this.")
