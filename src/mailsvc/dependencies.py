"""FastAPI dependencies shared by every domain, as `Annotated` aliases."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Header, Request, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.ext.asyncio import AsyncSession

from mailsvc.auth.scopes import Scope
from mailsvc.auth.tokens import Claims, InvalidTokenError
from mailsvc.errors import (
    AuthenticationError,
    BadRequestError,
    PermissionDeniedError,
    RateLimitedError,
)
from mailsvc.kit.db import discard_after_commit, run_after_commit
from mailsvc.state import AppState

_bearer = HTTPBearer(auto_error=False, description="An access token from `POST /auth/login`.")


async def get_state(request: Request) -> AppState:
    state: AppState = request.app.state.mailsvc
    return state


StateDep = Annotated[AppState, Depends(get_state)]


async def get_session(state: StateDep) -> AsyncIterator[AsyncSession]:
    """A session per request, committed when the endpoint returns, rolled back on error.

    `scope="function"` (below) ends it before the response is sent, so a client never
    sees success for a transaction that then fails to commit.
    """
    async with state.sessionmaker() as session:
        try:
            yield session
        except BaseException:
            discard_after_commit(session)
            await session.rollback()
            raise
        else:
            await session.commit()
            await run_after_commit(session)


SessionDep = Annotated[AsyncSession, Depends(get_session, scope="function")]


async def get_read_session(state: StateDep) -> AsyncIterator[AsyncSession]:
    """A session without a transaction, for endpoints that only read.

    Each statement sees the latest committed data on its own; a list request's
    few statements do not need one snapshot, and skipping BEGIN and COMMIT saves two
    database round trips per request.
    """
    async with state.read_sessionmaker() as session:
        yield session


ReadSessionDep = Annotated[AsyncSession, Depends(get_read_session, scope="function")]


async def get_claims(
    state: StateDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Claims:
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise AuthenticationError("missing bearer token", code="missing_token")
    try:
        return state.tokens.verify(credentials.credentials)
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
    state: StateDep,
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
    limiter = state.rate_limiter
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
