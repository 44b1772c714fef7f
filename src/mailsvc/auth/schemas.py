"""Request and response bodies of the auth endpoints and of `/api/keys`."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, SecretStr

from mailsvc.auth.scopes import Scope
from mailsvc.kit.fields import PRINTABLE_DESCRIPTION, PRINTABLE_PATTERN, check_printable


class LoginRequest(BaseModel):
    """Exchange an API key (from `mailsvc apikey create`) for an access token."""

    api_key: SecretStr = Field(min_length=1, max_length=200, examples=["msk_0192f3c4d5e6_Yk3…"])


class TokenResponse(BaseModel):
    """A bearer token for the `Authorization` header of every other request."""

    access_token: str
    token_type: Literal["bearer"] = "bearer"
    expires_in: int = Field(description="Lifetime of the token in seconds.", examples=[3600])


# Stored as text and shown to operators: no control characters (a NUL is a 500 in
# PostgreSQL, a CR/LF garbles whatever lists the keys).
KeyName = Annotated[
    str,
    Field(
        min_length=1,
        max_length=200,
        description=PRINTABLE_DESCRIPTION,
        json_schema_extra={"pattern": PRINTABLE_PATTERN},
    ),
    AfterValidator(check_printable),
]


def _unique(scopes: list[Scope]) -> list[Scope]:
    return sorted(set(scopes))


KeyScopes = Annotated[
    list[Scope],
    Field(
        min_length=1,
        max_length=len(Scope),
        description="What the key's tokens may do: scopes the caller's own token holds.",
        examples=[["mail:read", "mail:send"]],
    ),
    AfterValidator(_unique),
]


class ApiKeyCreate(BaseModel):
    """A new API key of the tenant. It grants this tenant only, and only scopes the
    caller holds."""

    model_config = ConfigDict(extra="forbid")

    name: KeyName = Field(examples=["billing-sync"])
    scopes: KeyScopes


class ApiKeyOut(BaseModel):
    """One of the tenant's API keys. The key itself is never part of it: only its
    SHA-256 is stored."""

    id: uuid.UUID
    name: str
    scopes: list[str] = Field(examples=[["mail:read", "mail:send"]])
    created_at: datetime
    last_used_at: datetime | None = Field(description="Its latest `POST /auth/login`.")
    revoked_at: datetime | None = Field(
        description="When it was revoked. It logs in no more, and the tokens issued "
        "for it are refused within `API_KEY_STATUS_CACHE_SECONDS` (30 by default)."
    )


class ApiKeyCreated(ApiKeyOut):
    """The new key with its value: store it now, it is never shown again."""

    api_key: str = Field(
        description="The key, for `POST /auth/login` (`api_key`).",
        examples=["msk_Yk3vQ0m8c1rZ2pX9nE4tW7uH6sA5dF0gJ1kL2zX3cV4"],
    )


class ApiKeyList(BaseModel):
    """The tenant's API keys, newest first, revoked ones included."""

    items: list[ApiKeyOut]
