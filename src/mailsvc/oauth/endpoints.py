"""`/api/oauth-apps`: the tenant's OAuth2 client registrations at Google, Microsoft or others."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Response, status

from mailsvc.auth.dependencies import Principal, scoped
from mailsvc.auth.scopes import Scope
from mailsvc.errors import problems
from mailsvc.kit.http import ResourcesDep, SessionDep
from mailsvc.kit.pagination import CursorQuery
from mailsvc.oauth.schemas import OAuthAppIn, OAuthAppOut, OAuthAppPage, OAuthAppUpdate
from mailsvc.oauth.service import OAuthAppService, to_out

router = APIRouter(prefix="/api/oauth-apps", tags=["oauth"])

AppsReader = Annotated[Principal, Depends(scoped(Scope.ACCOUNTS_READ))]
AppsWriter = Annotated[Principal, Depends(scoped(Scope.ACCOUNTS_WRITE))]
_AUTH_PROBLEMS = (400, 401, 403, 429)


@router.post(
    "",
    operation_id="create_oauth_app",
    status_code=status.HTTP_201_CREATED,
    response_model=OAuthAppOut,
    responses=problems(*_AUTH_PROBLEMS, 422),
)
async def create_oauth_app(
    body: OAuthAppIn,
    principal: AppsWriter,
    session: SessionDep,
    resources: ResourcesDep,
    response: Response,
) -> OAuthAppOut:
    """Register an OAuth2 app (a provider preset fills what is left out)."""
    app = await OAuthAppService(session, principal.tenant_id, resources).create(body)
    response.headers["Location"] = f"/api/oauth-apps/{app.id}"
    return to_out(app)


@router.get(
    "",
    operation_id="list_oauth_apps",
    response_model=OAuthAppPage,
    responses=problems(*_AUTH_PROBLEMS, 422),
)
async def list_oauth_apps(
    principal: AppsReader,
    session: SessionDep,
    resources: ResourcesDep,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: CursorQuery = None,
) -> OAuthAppPage:
    """List the tenant's OAuth2 apps, oldest first."""
    return await OAuthAppService(session, principal.tenant_id, resources).page(
        cursor=cursor, limit=limit
    )


@router.get(
    "/{app_id}",
    operation_id="get_oauth_app",
    response_model=OAuthAppOut,
    responses=problems(*_AUTH_PROBLEMS, 404, 422),
)
async def get_oauth_app(
    app_id: uuid.UUID, principal: AppsReader, session: SessionDep, resources: ResourcesDep
) -> OAuthAppOut:
    """Read one OAuth2 app (without its client secret)."""
    return to_out(await OAuthAppService(session, principal.tenant_id, resources).get(app_id))


@router.put(
    "/{app_id}",
    operation_id="update_oauth_app",
    response_model=OAuthAppOut,
    responses=problems(*_AUTH_PROBLEMS, 404, 422),
)
async def update_oauth_app(
    app_id: uuid.UUID,
    body: OAuthAppUpdate,
    principal: AppsWriter,
    session: SessionDep,
    resources: ResourcesDep,
) -> OAuthAppOut:
    """Replace an OAuth2 app's settings; a left-out client secret stays as it is."""
    service = OAuthAppService(session, principal.tenant_id, resources)
    return to_out(await service.update(app_id, body))


@router.delete(
    "/{app_id}",
    operation_id="delete_oauth_app",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=problems(*_AUTH_PROBLEMS, 404, 409, 422),
)
async def delete_oauth_app(
    app_id: uuid.UUID, principal: AppsWriter, session: SessionDep, resources: ResourcesDep
) -> None:
    """Delete an OAuth2 app that no account uses any more."""
    await OAuthAppService(session, principal.tenant_id, resources).delete(app_id)
