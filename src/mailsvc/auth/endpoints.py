"""`POST /auth/login`, and `/api/keys`: the tenant's own API keys."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, status

from mailsvc.auth import schemas, service
from mailsvc.auth.dependencies import Principal, RevocationsDep, TokensDep, scoped
from mailsvc.auth.keys import ApiKeyService
from mailsvc.auth.scopes import Scope
from mailsvc.errors import problems
from mailsvc.kit.http import ReadSessionDep, ResourcesDep, SessionDep

router = APIRouter(prefix="/auth", tags=["auth"])
keys_router = APIRouter(prefix="/api/keys", tags=["auth"])

KeyManager = Annotated[Principal, Depends(scoped(Scope.KEYS_MANAGE))]
# 400: a body that cannot be read, or a multi-tenant token without X-Tenant-ID.
_AUTH_PROBLEMS = (400, 401, 403, 429)


@router.post(
    "/login",
    operation_id="login",
    response_model=schemas.TokenResponse,
    responses=problems(400, 401, 422),
)
async def login(
    body: schemas.LoginRequest, session: SessionDep, resources: ResourcesDep, tokens: TokensDep
) -> schemas.TokenResponse:
    """Exchange an API key for a bearer access token."""
    return await service.login(
        session,
        api_key=body.api_key.get_secret_value(),
        tokens=tokens,
        expires_in=resources.settings.access_token_expire_minutes * 60,
    )


@keys_router.get(
    "",
    operation_id="list_api_keys",
    response_model=schemas.ApiKeyList,
    responses=problems(*_AUTH_PROBLEMS, 422),
)
async def list_api_keys(
    principal: KeyManager, session: ReadSessionDep, revocations: RevocationsDep
) -> schemas.ApiKeyList:
    """List the tenant's API keys, newest first, revoked ones included (never their values).

    Keys that also grant other tenants are not the tenant's and are not listed.
    """
    keys = await ApiKeyService(session, principal.tenant_id, revocations).list()
    return schemas.ApiKeyList(items=keys)


@keys_router.post(
    "",
    operation_id="create_api_key",
    status_code=status.HTTP_201_CREATED,
    response_model=schemas.ApiKeyCreated,
    responses=problems(*_AUTH_PROBLEMS, 422),
)
async def create_api_key(
    body: schemas.ApiKeyCreate,
    principal: KeyManager,
    session: SessionDep,
    revocations: RevocationsDep,
) -> schemas.ApiKeyCreated:
    """Create an API key for this tenant alone; the answer holds the key, shown this once.

    Its scopes must be among the caller's (403 `scope_not_held` otherwise).
    """
    return await ApiKeyService(session, principal.tenant_id, revocations).create(
        name=body.name, scopes=body.scopes, held_scopes=principal.scopes
    )


@keys_router.delete(
    "/{key_id}",
    operation_id="revoke_api_key",
    response_model=schemas.ApiKeyOut,
    responses=problems(*_AUTH_PROBLEMS, 404, 422),
)
async def revoke_api_key(
    key_id: uuid.UUID, principal: KeyManager, session: SessionDep, revocations: RevocationsDep
) -> schemas.ApiKeyOut:
    """Revoke one of the tenant's API keys: it logs in no more, and its tokens are refused.

    Tokens already issued for it answer 401 `api_key_revoked` at once on this process,
    on the others within `API_KEY_STATUS_CACHE_SECONDS`. Revoking again answers the
    same key.
    """
    return await ApiKeyService(session, principal.tenant_id, revocations).revoke(key_id)
