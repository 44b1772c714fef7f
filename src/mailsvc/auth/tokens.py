"""JWT issue and verification; the only importer of python-jose.

Verification accepts exactly the configured algorithm (an allow-list of one), so
`alg: none` and algorithm-confusion tokens are rejected, and requires `sub`,
`exp`, `iss` and `aud`.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass

from jose import JWTError, jwt

from mailsvc.config import Settings


class InvalidTokenError(Exception):
    """The token is malformed, badly signed, expired or for another audience."""


@dataclass(frozen=True, slots=True)
class Claims:
    """What a verified token says about its bearer."""

    subject: str
    tenants: frozenset[str]
    scopes: frozenset[str]
    expires_at: int


# Clients send the same token with every request until it expires; checking its
# signature and claims again each time was a tenth of a list request's CPU. Only
# tokens that verified are kept, and each only until its `exp`.
_VERIFIED_CACHE_SIZE = 1024


class TokenCodec:
    """Signs and verifies mailsvc access tokens with the configured algorithm and keys."""

    def __init__(self, settings: Settings) -> None:
        self._verified: OrderedDict[str, Claims] = OrderedDict()
        self._algorithm = settings.jwt_algorithm
        self._issuer = settings.jwt_issuer
        self._audience = settings.jwt_audience
        if self._algorithm == "HS256":
            assert settings.jwt_secret is not None  # checked by Settings.validate_secrets
            self._signing_key: str | None = settings.jwt_secret.get_secret_value()
            self._verify_key = self._signing_key
        else:
            private = settings.jwt_private_key
            self._signing_key = private.get_secret_value() if private else None
            assert settings.jwt_public_key is not None
            self._verify_key = settings.jwt_public_key

    def issue(self, *, subject: str, tenants: list[str], scopes: list[str], expires_in: int) -> str:
        """A signed token; `tenant` is a string for one tenant, a list for several."""
        if self._signing_key is None:
            raise InvalidTokenError(f"JWT_PRIVATE_KEY is needed to issue {self._algorithm} tokens")
        now = int(time.time())
        claims = {
            "sub": subject,
            "tenant": tenants[0] if len(tenants) == 1 else sorted(tenants),
            "scopes": sorted(scopes),
            "iat": now,
            "exp": now + expires_in,
            "iss": self._issuer,
            "aud": self._audience,
        }
        return str(jwt.encode(claims, self._signing_key, algorithm=self._algorithm))

    def verify(self, token: str) -> Claims:
        """The claims of a valid token; `InvalidTokenError` otherwise."""
        claims = self._verified.get(token)
        if claims is not None:
            if time.time() < claims.expires_at:
                self._verified.move_to_end(token)
                return claims
            del self._verified[token]
        claims = self._decode(token)
        self._verified[token] = claims
        if len(self._verified) > _VERIFIED_CACHE_SIZE:
            self._verified.popitem(last=False)
        return claims

    def _decode(self, token: str) -> Claims:
        try:
            payload = jwt.decode(
                token,
                self._verify_key,
                algorithms=[self._algorithm],
                audience=self._audience,
                issuer=self._issuer,
                options={"require_exp": True, "require_sub": True, "require_iss": True,
                         "require_aud": True},
            )  # fmt: skip
        except JWTError as exc:
            raise InvalidTokenError(str(exc)) from exc
        tenant_claim = payload.get("tenant")
        if isinstance(tenant_claim, str):
            tenants = frozenset({tenant_claim})
        elif isinstance(tenant_claim, list) and all(isinstance(t, str) for t in tenant_claim):
            tenants = frozenset(tenant_claim)
        else:
            raise InvalidTokenError("token has no valid tenant claim")
        scopes = payload.get("scopes", [])
        if not isinstance(scopes, list) or not all(isinstance(s, str) for s in scopes):
            raise InvalidTokenError("token has an invalid scopes claim")
        return Claims(
            subject=str(payload["sub"]),
            tenants=tenants,
            scopes=frozenset(scopes),
            expires_at=int(payload["exp"]),
        )
