"""`/api/oauth`: connect a mailbox through an OAuth2 app's consent screen (hosted flow)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, status
from fastapi.responses import RedirectResponse

from mailsvc.account.hosted_flow import HostedFlow
from mailsvc.account.schemas import OAuthAuthorizeIn, OAuthAuthorizeOut
from mailsvc.auth.dependencies import Principal, scoped
from mailsvc.auth.scopes import Scope
from mailsvc.errors import problems
from mailsvc.kit.http import ResourcesDep, SessionDep

router = APIRouter(prefix="/api/oauth", tags=["oauth"])

AccountsWriter = Annotated[Principal, Depends(scoped(Scope.ACCOUNTS_WRITE))]
# Bounds on what the provider (or anyone) puts in the callback's query.
CallbackText = Annotated[str | None, Query(max_length=4096)]


@router.post(
    "/authorize",
    operation_id="start_oauth_authorization",
    response_model=OAuthAuthorizeOut,
    responses=problems(400, 401, 403, 404, 422, 429),
)
async def start_oauth_authorization(
    body: OAuthAuthorizeIn,
    principal: AccountsWriter,
    session: SessionDep,
    resources: ResourcesDep,
) -> OAuthAuthorizeOut:
    """Start connecting a mailbox: the provider URL to send the user's browser to."""
    return await HostedFlow(session, resources).authorize(principal.tenant_id, body)


@router.get(
    "/callback",
    operation_id="complete_oauth_authorization",
    status_code=status.HTTP_303_SEE_OTHER,
    response_class=RedirectResponse,
    responses={
        303: {"description": "To the application's `return_url`, with `account_id` or `error`."},
        **problems(400, 422),
    },
)
async def complete_oauth_authorization(
    session: SessionDep,
    resources: ResourcesDep,
    state: CallbackText = None,
    code: CallbackText = None,
    error: CallbackText = None,
    error_description: CallbackText = None,
) -> RedirectResponse:
    """Where the provider sends the user back (the app's `redirect_uri`); not for API clients."""
    target = await HostedFlow(session, resources).complete(
        state=state or "", code=code, error=error, error_description=error_description
    )
    return RedirectResponse(target, status_code=status.HTTP_303_SEE_OTHER)
