"""`/api/accounts`: register, list, read, update and delete mailbox accounts."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Response, status

from mailsvc.account.schemas import AccountCreate, AccountOut, AccountPage, AccountUpdate
from mailsvc.account.service import AccountService, to_out
from mailsvc.auth.dependencies import Principal, scoped
from mailsvc.auth.scopes import Scope
from mailsvc.errors import problems
from mailsvc.kit.http import ResourcesDep, SessionDep
from mailsvc.kit.pagination import CursorQuery

router = APIRouter(prefix="/api/accounts", tags=["accounts"])

AccountsReader = Annotated[Principal, Depends(scoped(Scope.ACCOUNTS_READ))]
AccountsWriter = Annotated[Principal, Depends(scoped(Scope.ACCOUNTS_WRITE))]
VerifyQuery = Annotated[
    bool,
    Query(description="Log in to the IMAP and SMTP servers before saving (default true)."),
]
_AUTH_PROBLEMS = (400, 401, 403, 429)


@router.post(
    "",
    operation_id="create_account",
    status_code=status.HTTP_201_CREATED,
    response_model=AccountOut,
    responses=problems(*_AUTH_PROBLEMS, 404, 409, 422, 502),
)
async def create_account(
    body: AccountCreate,
    principal: AccountsWriter,
    session: SessionDep,
    resources: ResourcesDep,
    response: Response,
    verify: VerifyQuery = True,
) -> AccountOut:
    """Register a mailbox account after checking its IMAP and SMTP logins."""
    service = AccountService(session, principal.tenant_id, resources)
    account = await service.create(body, verify=verify)
    response.headers["Location"] = f"/api/accounts/{account.id}"
    return to_out(account)


@router.get(
    "",
    operation_id="list_accounts",
    response_model=AccountPage,
    responses=problems(*_AUTH_PROBLEMS, 422),
)
async def list_accounts(
    principal: AccountsReader,
    session: SessionDep,
    resources: ResourcesDep,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: CursorQuery = None,
) -> AccountPage:
    """List the tenant's accounts, oldest first."""
    return await AccountService(session, principal.tenant_id, resources).page(
        cursor=cursor, limit=limit
    )


@router.get(
    "/{account_id}",
    operation_id="get_account",
    response_model=AccountOut,
    responses=problems(*_AUTH_PROBLEMS, 404, 422),
)
async def get_account(
    account_id: uuid.UUID, principal: AccountsReader, session: SessionDep, resources: ResourcesDep
) -> AccountOut:
    """Read one account and its connection resources."""
    return to_out(await AccountService(session, principal.tenant_id, resources).get(account_id))


@router.put(
    "/{account_id}",
    operation_id="update_account",
    response_model=AccountOut,
    responses=problems(*_AUTH_PROBLEMS, 404, 409, 422, 502),
)
async def update_account(
    account_id: uuid.UUID,
    body: AccountUpdate,
    principal: AccountsWriter,
    session: SessionDep,
    resources: ResourcesDep,
    verify: VerifyQuery = True,
) -> AccountOut:
    """Replace an account's settings; changed logins are checked before saving."""
    service = AccountService(session, principal.tenant_id, resources)
    return to_out(await service.update(account_id, body, verify=verify))


@router.delete(
    "/{account_id}",
    operation_id="delete_account",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=problems(*_AUTH_PROBLEMS, 404, 422),
)
async def delete_account(
    account_id: uuid.UUID, principal: AccountsWriter, session: SessionDep, resources: ResourcesDep
) -> None:
    """Delete an account and all its synced data; its connections are closed."""
    await AccountService(session, principal.tenant_id, resources).delete(account_id)


@router.post(
    "/{account_id}/disable",
    operation_id="disable_account",
    response_model=AccountOut,
    responses=problems(*_AUTH_PROBLEMS, 404, 422),
)
async def disable_account(
    account_id: uuid.UUID, principal: AccountsWriter, session: SessionDep, resources: ResourcesDep
) -> AccountOut:
    """Stop syncing and watching the account (state `disabled`); its mail stays stored.

    Sending through the account still works. Disabling a disabled account changes nothing.
    """
    service = AccountService(session, principal.tenant_id, resources)
    return to_out(await service.set_enabled(account_id, enabled=False))


@router.post(
    "/{account_id}/enable",
    operation_id="enable_account",
    response_model=AccountOut,
    responses=problems(*_AUTH_PROBLEMS, 404, 422),
)
async def enable_account(
    account_id: uuid.UUID, principal: AccountsWriter, session: SessionDep, resources: ResourcesDep
) -> AccountOut:
    """Connect a disabled account again (state `connecting`); it syncs what it missed."""
    service = AccountService(session, principal.tenant_id, resources)
    return to_out(await service.set_enabled(account_id, enabled=True))
