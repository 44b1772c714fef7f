"""Request and response bodies of the auth endpoints."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field, SecretStr


class LoginRequest(BaseModel):
    """Exchange an API key (from `mailsvc apikey create`) for an access token."""

    api_key: SecretStr = Field(min_length=1, max_length=200, examples=["msk_0192f3c4d5e6_Yk3…"])


class TokenResponse(BaseModel):
    """A bearer token for the `Authorization` header of every other request."""

    access_token: str
    token_type: Literal["bearer"] = "bearer"
    expires_in: int = Field(description="Lifetime of the token in seconds.", examples=[3600])
