"""Who is calling: the bearer token, the tenant it acts for, its scopes and rate limit."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import cache
from typing import Annotated, cast

from fastapi import Depends, Header, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import Field, TypeAdapter, ValidationError

from mailsvc.auth.revocations import API_KEY_SUBJECT_PREFIX, ApiKeyRevocations
from mailsvc.auth.scopes import Scope
from mailsvc.auth.tokens import Claims, InvalidTokenError, TokenCodec
from mailsvc.errors import (
    AuthenticationError,
    BadRequestError,
    PermissionDeniedError,
    RateLimitedError,
)
from mailsvc.kit.hot_route import FastParameterError, with_fast_path
from mailsvc.kit.http import add_response_headers, provided
from mailsvc.kit.resources import Resources

_bearer = HTTPBearer(auto_error=False, description="An access token from `POST /auth/login`.")

TokensDep = Annotated[TokenCodec, Depends(provided(TokenCodec))]
RevocationsDep = Annotated[ApiKeyRevocations, Depends(provided(ApiKeyRevocations))]


async def get_claims(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Claims:
    """The verified claims of the bearer token (401 without a valid one)."""
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise AuthenticationError("missing bearer token", code="missing_token")
    tokens = cast(TokenCodec, request.app.state.components[TokenCodec])
    try:
        return tokens.verify(credentials.credentials)
    except InvalidTokenError as exc:
        raise AuthenticationError("invalid or expired token", code="invalid_token") from exc


@dataclass(frozen=True, slots=True)
class Principal:
    """The caller, acting for exactly one tenant in this request."""

    subject: str
    tenant_id: str
    scopes: frozenset[str]


# Where a request's principal is kept once resolved, so that the rate limit counts
# the request once however many of the dependencies below its route uses.
_PRINCIPAL_KEY = "mailsvc.principal"


# The `X-Tenant-ID` header as `authorize` declares it, for its fast path.
_TENANT_HEADER_MAX_LENGTH = 64
_tenant_header: TypeAdapter[str | None] = TypeAdapter(
    Annotated[str | None, Field(max_length=_TENANT_HEADER_MAX_LENGTH)]
)


@cache
def scoped(scope: Scope) -> Callable[..., Awaitable[Principal]]:
    """The one dependency of a route that needs `scope`: token, tenant, scope, rate limit.

    Flat on purpose: FastAPI solves each dependency of a request on its own, and the
    six this took as a chain were a tenth of a list request's CPU. The token's claims
    come first (401), then the `X-Tenant-ID` header's validation (422), as before.
    Hot routes (kit/hot_route.py) run its fast path, which does the same from the
    request alone.
    """

    async def authorize(
        request: Request,
        claims: Annotated[Claims, Depends(get_claims)],
        x_tenant_id: Annotated[
            str | None,
            Header(
                description="Tenant to act for, among those the token grants. "
                "Optional when the token grants only one.",
                max_length=_TENANT_HEADER_MAX_LENGTH,
            ),
        ] = None,
    ) -> Principal:
        return await authorized(request, claims, x_tenant_id, scope)

    async def authorize_fast(request: Request) -> Principal:
        claims = await get_claims(request, await _bearer(request))
        try:
            x_tenant_id = _tenant_header.validate_python(request.headers.get("x-tenant-id"))
        except ValidationError as exc:
            raise FastParameterError(
                [
                    {**error, "loc": ("header", "x-tenant-id", *error["loc"])}
                    for error in exc.errors(include_url=False)
                ]
            ) from exc
        return await authorized(request, claims, x_tenant_id, scope)

    authorize.__name__ = f"authorize_{scope.name.lower()}"
    with_fast_path(authorize, authorize_fast)
    return authorize


async def authorized(
    request: Request, claims: Claims, tenant_id: str | None, scope: Scope
) -> Principal:
    """The request's principal (admitted once per request), if it holds `scope`.

    `tenant_id` is what `X-Tenant-ID` says (the console passes the tenant in its
    path): it selects among the token's tenants, never grants one.
    """
    principal: Principal | None = request.scope.get(_PRINCIPAL_KEY)
    if principal is None:
        principal = await _admit(request, claims, tenant_id)
    if scope.value not in principal.scopes:
        raise PermissionDeniedError(
            f"the token lacks the {scope.value} scope", code="insufficient_scope"
        )
    return principal


async def _admit(request: Request, claims: Claims, x_tenant_id: str | None) -> Principal:
    """Refuse a revoked key's token, resolve the tenant (X-Tenant-ID selects, never
    grants) and apply its rate limit."""
    if claims.subject.startswith(API_KEY_SUBJECT_PREFIX):
        await _refuse_revoked_key(request, claims.subject.removeprefix(API_KEY_SUBJECT_PREFIX))
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
    limiter = cast(Resources, request.app.state.components[Resources]).rate_limiter
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
        add_response_headers(request.scope, headers)
    principal = Principal(subject=claims.subject, tenant_id=tenant_id, scopes=claims.scopes)
    request.scope[_PRINCIPAL_KEY] = principal
    return principal


async def _refuse_revoked_key(request: Request, key_id: str) -> None:
    """401 when the key the token was issued for has been revoked since.

    A dict lookup while the key's status is fresh (auth/revocations.py); the database
    is read only when it is not.
    """
    revocations = cast(ApiKeyRevocations, request.app.state.components[ApiKeyRevocations])
    revoked = revocations.cached(key_id)
    if revoked is None:
        revoked = await revocations.load(key_id)
    if revoked:
        raise AuthenticationError("the API key of this token is revoked", code="api_key_revoked")
