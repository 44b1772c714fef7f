"""Talking to an OAuth2 provider's token and userinfo endpoints (RFC 6749, OIDC Core).

The only module that makes HTTP requests to a provider. Every answer is hostile
until checked: the body is read up to a cap, must be a JSON object, and tokens
must be printable ASCII of bounded length. Two outcomes besides success:

- `OAuthRefused`: the provider answered with an OAuth2 error (`invalid_grant`,
  `invalid_client`, ...). Repeating the same request fails the same way.
- `OAuthUnavailable`: no usable answer (network error, timeout, 5xx, a body that
  is not an OAuth2 answer). A later attempt may succeed.

Error texts name the provider's error code and description (cleaned), never a
token, a code or the client secret.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from typing import Any

from mailsvc.kit.outbound_http import HttpAnswer, OutboundHttp, OutboundHttpError
from mailsvc.mime.text import safe_server_text

# Tokens of Google and Microsoft run to ~2-4 KB; a body of 64 KB is no token answer.
MAX_BODY_BYTES = 64 * 1024
MAX_TOKEN_LENGTH = 16 * 1024
# Errors after which the stored grant is useless (RFC 6749 §5.2); any other error
# code from the provider is treated the same, since repeating cannot help.
GRANT_ERRORS = frozenset({"invalid_grant", "invalid_client", "unauthorized_client"})


class OAuthError(Exception):
    """Root of the provider errors; the message is safe to store and show."""


class OAuthRefused(OAuthError):
    """The provider refused with an OAuth2 error code."""

    def __init__(self, error: str, description: str | None) -> None:
        self.error = error
        self.description = description
        detail = f"{error}: {description}" if description else error
        super().__init__(f"the provider refused: {detail}")


class OAuthUnavailable(OAuthError):
    """No usable answer from the provider; a later attempt may succeed."""


@dataclass(frozen=True, slots=True)
class TokenGrant:
    """What a token endpoint issued. `repr` shows no token."""

    access_token: str = field(repr=False)
    refresh_token: str | None = field(repr=False)
    expires_in: int | None
    id_token: str | None = field(repr=False)
    scope: str | None


@dataclass(frozen=True, slots=True)
class ClientCredentials:
    """An app's client id and secret at the provider's token endpoint."""

    token_url: str
    client_id: str
    client_secret: str = field(repr=False)


def _token(value: object, name: str) -> str:
    if not isinstance(value, str) or not value:
        raise OAuthUnavailable(f"the token endpoint's answer has no usable {name}")
    if len(value) > MAX_TOKEN_LENGTH or not value.isascii() or not value.isprintable():
        raise OAuthUnavailable(f"the token endpoint's {name} is not a token")
    return value


def _optional_token(value: object, name: str) -> str | None:
    return None if value is None else _token(value, name)


def _json_object(answer: HttpAnswer) -> dict[str, Any] | None:
    """The body as a JSON object, or None when it is not one (or too large)."""
    if answer.truncated:
        return None
    try:
        parsed = json.loads(answer.body)
    except (UnicodeDecodeError, ValueError):
        return None
    return parsed if isinstance(parsed, dict) else None


def _refusal(answer: dict[str, Any]) -> OAuthRefused | None:
    error = answer.get("error")
    if not isinstance(error, str) or not error:
        return None
    description = answer.get("error_description")
    text = safe_server_text(description)[:300] if isinstance(description, str) else None
    return OAuthRefused(safe_server_text(error)[:100], text or None)


def _grant(answer: dict[str, Any]) -> TokenGrant:
    token_type = answer.get("token_type")
    # RFC 6749 §7.1: the type is case-insensitive; anything but Bearer is unusable here.
    if not isinstance(token_type, str) or token_type.lower() != "bearer":
        raise OAuthUnavailable("the token endpoint issued no bearer token")
    expires_in = answer.get("expires_in")
    # Some providers send it as a string ("3599").
    if isinstance(expires_in, str) and expires_in.isdigit():
        expires_in = int(expires_in)
    if not isinstance(expires_in, int) or isinstance(expires_in, bool) or expires_in <= 0:
        expires_in = None
    scope = answer.get("scope")
    return TokenGrant(
        access_token=_token(answer.get("access_token"), "access token"),
        refresh_token=_optional_token(answer.get("refresh_token"), "refresh token"),
        expires_in=min(expires_in, 10 * 365 * 86400) if expires_in is not None else None,
        id_token=_optional_token(answer.get("id_token"), "id token"),
        scope=safe_server_text(scope)[:2000] if isinstance(scope, str) else None,
    )


class ProviderClient:
    """Token endpoint requests over one shared HTTP client (connection reuse)."""

    def __init__(self, *, timeout_seconds: float) -> None:
        # Never following redirects matters here: a token endpoint that redirects
        # would carry the client secret and the grant to wherever it points.
        self._http = OutboundHttp(timeout_seconds=timeout_seconds, max_connections=20)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def exchange_code(
        self, client: ClientCredentials, *, code: str, verifier: str, redirect_uri: str
    ) -> TokenGrant:
        """The authorization-code grant with its PKCE verifier (RFC 6749 §4.1.3, RFC 7636)."""
        return await self._token_request(
            client,
            {
                "grant_type": "authorization_code",
                "code": code,
                "code_verifier": verifier,
                "redirect_uri": redirect_uri,
            },
        )

    async def refresh(self, client: ClientCredentials, *, refresh_token: str) -> TokenGrant:
        """The refresh-token grant (RFC 6749 §6)."""
        return await self._token_request(
            client, {"grant_type": "refresh_token", "refresh_token": refresh_token}
        )

    async def _token_request(self, client: ClientCredentials, form: dict[str, str]) -> TokenGrant:
        # client_secret_post: the one method Google, Microsoft and most servers accept.
        form = {**form, "client_id": client.client_id, "client_secret": client.client_secret}
        try:
            reply = await self._http.request(
                "POST",
                client.token_url,
                form=form,
                headers={"Accept": "application/json"},
                max_body=MAX_BODY_BYTES,
            )
        except OutboundHttpError as exc:
            raise OAuthUnavailable(f"the token endpoint cannot be reached: {exc}") from exc
        answer, status = _json_object(reply), reply.status_code
        if answer is not None:
            refusal = _refusal(answer)
            # RFC 6749 §5.2 says 400 (401 for a client failure); an error object with
            # another 4xx is still the provider's refusal. A 5xx is an outage.
            if refusal is not None and 400 <= status < 500:
                raise refusal
        if status != 200 or answer is None:
            raise OAuthUnavailable(
                f"the token endpoint answered HTTP {status}"
                + ("" if answer is not None else " without a JSON object")
            )
        return _grant(answer)

    async def userinfo_email(self, userinfo_url: str, access_token: str) -> str | None:
        """The `email` claim of the OIDC userinfo endpoint, if it gives one."""
        try:
            reply = await self._http.request(
                "GET",
                userinfo_url,
                headers={"Authorization": f"Bearer {access_token}", "Accept": "application/json"},
                max_body=MAX_BODY_BYTES,
            )
        except OutboundHttpError as exc:
            raise OAuthUnavailable(f"the userinfo endpoint cannot be reached: {exc}") from exc
        answer, status = _json_object(reply), reply.status_code
        if status != 200 or answer is None:
            raise OAuthUnavailable(f"the userinfo endpoint answered HTTP {status}")
        email = answer.get("email")
        return email if isinstance(email, str) else None


def id_token_email(id_token: str) -> str | None:
    """The user's address from an id_token received straight from the token endpoint.

    OIDC Core §3.1.3.7 (6) lets a client that got the id_token directly from the
    token endpoint over TLS rely on that channel instead of the signature: the token
    never passed through the browser. `email`, else Microsoft's `preferred_username`
    when it is an address.
    """
    parts = id_token.split(".")
    if len(parts) != 3:
        return None
    try:
        claims = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(claims, dict):
        return None
    for claim in ("email", "preferred_username"):
        value = claims.get(claim)
        if isinstance(value, str) and "@" in value:
            return value
    return None
