"""OAuth2 app request and response bodies (they become the OpenAPI schema)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, SecretStr

from mailsvc.kit.fields import (
    PRINTABLE_DESCRIPTION,
    PRINTABLE_PATTERN,
    Host,
    HttpUrl,
    Port,
    check_printable,
)
from mailsvc.kit.mailserver import Security


def _printable(max_length: int) -> object:
    return Field(
        min_length=1,
        max_length=max_length,
        description=PRINTABLE_DESCRIPTION,
        json_schema_extra={"pattern": PRINTABLE_PATTERN},
    )


AppName = Annotated[str, _printable(200), AfterValidator(check_printable)]
ClientId = Annotated[str, _printable(1024), AfterValidator(check_printable)]
Scope = Annotated[
    str,
    Field(min_length=1, max_length=512, pattern=r"^[\x21\x23-\x5b\x5d-\x7e]+$"),
]
ProviderName = Literal["google", "microsoft", "generic"]


class ServerEndpoint(BaseModel):
    """Where the app's accounts reach their IMAP or SMTP server."""

    model_config = ConfigDict(extra="forbid")

    host: Host = Field(examples=["imap.example.com"])
    port: Port = Field(examples=[993])
    security: Security = Field(default=Security.TLS)


class OAuthAppIn(BaseModel):
    """Register an OAuth2 app. For `google` and `microsoft` only `name`, `client_id`,
    `client_secret` and `redirect_uri` are needed; every other field overrides the
    provider's preset. `generic` needs the endpoints, scopes and both servers."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "name": "Gmail for Example Inc.",
                    "provider": "google",
                    "client_id": "1234-abc.apps.googleusercontent.com",
                    "client_secret": "GOCSPX-...",
                    "redirect_uri": "https://mail-api.example.com/api/oauth/callback",
                }
            ],
            # What a preset fills in, a generic app must give (a null counts as left out).
            "if": {"properties": {"provider": {"const": "generic"}}},
            "then": {
                "required": ["authorization_url", "token_url", "scopes", "imap", "smtp"],
                "properties": {
                    "authorization_url": {"type": "string"},
                    "token_url": {"type": "string"},
                    "scopes": {"type": "array"},
                    "imap": {"type": "object"},
                    "smtp": {"type": "object"},
                },
            },
        },
    )

    name: AppName = Field(examples=["Gmail for Example Inc."])
    provider: ProviderName
    client_id: ClientId
    client_secret: SecretStr = Field(
        min_length=1, max_length=4096, description="Stored encrypted; never returned."
    )
    redirect_uri: HttpUrl = Field(
        description="mailsvc's callback (`/api/oauth/callback` under its public URL), "
        "exactly as registered at the provider."
    )
    authorization_url: HttpUrl | None = None
    token_url: HttpUrl | None = None
    userinfo_url: HttpUrl | None = Field(
        default=None,
        description="OIDC userinfo endpoint; used to learn the address when the id_token has none.",
    )
    scopes: list[Scope] | None = Field(default=None, min_length=1, max_length=50)
    imap: ServerEndpoint | None = None
    smtp: ServerEndpoint | None = None


class OAuthAppUpdate(OAuthAppIn):
    """Like `OAuthAppIn`; omit `client_secret` to keep the stored one."""

    client_secret: SecretStr | None = Field(  # type: ignore[assignment]
        default=None, min_length=1, max_length=4096, description="New secret; omit to keep."
    )


class ServerEndpointOut(BaseModel):
    host: str
    port: int
    security: Security


class OAuthAppOut(BaseModel):
    """A registered OAuth2 app; the client secret is never part of it."""

    id: uuid.UUID
    name: str
    provider: ProviderName
    client_id: str
    redirect_uri: str
    authorization_url: str
    token_url: str
    userinfo_url: str | None
    scopes: list[str]
    imap: ServerEndpointOut
    smtp: ServerEndpointOut
    created_at: datetime
    updated_at: datetime


class OAuthAppPage(BaseModel):
    """One page of OAuth2 apps, oldest first; pass `next_cursor` as `cursor` for the next."""

    items: list[OAuthAppOut]
    next_cursor: str | None = None
