"""Who is calling: the bearer token, the tenant it acts for, its scopes and rate limit."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Header, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from mailsvc.auth.scopes import Scope
from mailsvc.auth.tokens import Claims, InvalidTokenError, TokenCodec
from mailsvc.errors import (
    AuthenticationError,
    BadRequestError,
    PermissionDeniedError,
    RateLimitedError,
)
from mailsvc.kit.http import ResourcesDep, provided

_bearer = HTTPBearer(auto_error=False, description="An access token from `POST /auth/login`.")

TokensDep = Annotated[TokenCodec, Depends(provided(TokenCodec))]


async def get_claims(
    tokens: TokensDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Claims:
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise AuthenticationError("missing bearer token", code="missing_token")
    try:
        return tokens.verify(credentials.credentials)
    except InvalidTokenError as exc:
        raise AuthenticationError("invalid or expired token", code="invalid_token") from exc


ClaimsDep = Annotated[Claims, Depends(get_claims)]


@dataclass(frozen=True, slots=True)
class Principal:
    """The caller, acting for exactly one tenant in this request."""

    subject: str
    tenant_id: str
    scopes: frozenset[str]


async def get_principal(
    resources: ResourcesDep,
    claims: ClaimsDep,
    response: Response,
    x_tenant_id: Annotated[
        str | None,
        Header(
            description="Tenant to act for, among those the token grants. "
            "Optional when the token grants only one.",
            max_length=64,
        ),
    ] = None,
) -> Principal:
    """Resolve the tenant (X-Tenant-ID selects, never grants) and apply its rate limit."""
    if x_tenant_id is not None:
        if x_tenant_id not in claims.tenants:
            raise PermissionDeniedError(
                "the token does not grant this tenant", code="tenant_not_granted"
            )
        tenant_id = x_tenant_id
    elif len(claims.tenants) == 1:
        (tenant_id,) = claims.tenants
    else:
        raise BadRequestError(
            "the token grants several tenants: choose one with X-Tenant-ID",
            code="tenant_required",
        )
    limiter = resources.rate_limiter
    if limiter.enabled:
        decision = await limiter.hit(tenant_id)
        headers = {
            "RateLimit-Limit": str(decision.limit),
            "RateLimit-Remaining": str(max(decision.remaining, 0)),
            "RateLimit-Reset": str(decision.reset_after),
        }
        if not decision.allowed:
            raise RateLimitedError(
                "rate limit exceeded for this tenant",
                headers={**headers, "Retry-After": str(max(decision.reset_after, 1))},
            )
        response.headers.update(headers)
    return Principal(subject=claims.subject, tenant_id=tenant_id, scopes=claims.scopes)


PrincipalDep = Annotated[Principal, Depends(get_principal)]


def scoped(scope: Scope) -> Callable[[Principal], Awaitable[Principal]]:
    """A dependency answering 403 `insufficient_scope` unless the token carries `scope`."""

    async def check(principal: PrincipalDep) -> Principal:
        if scope.value not in principal.scopes:
            raise PermissionDeniedError(
                f"the token lacks the {scope.value} scope", code="insufficient_scope"
            )
        return principal

    return check
