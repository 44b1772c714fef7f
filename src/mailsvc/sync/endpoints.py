"""`/api/sync/...` and `/api/accounts/{id}/mailboxes`."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Response, status

from mailsvc.auth.dependencies import Principal, scoped
from mailsvc.auth.scopes import Scope
from mailsvc.errors import problems
from mailsvc.kit.hot_route import hot_get
from mailsvc.kit.http import ReadsDep, ResourcesDep, SessionDep
from mailsvc.sync.schemas import MailboxList, SyncRequested, SyncStatus
from mailsvc.sync.service import SyncProgress, SyncService

router = APIRouter(tags=["sync"])

AccountsReader = Annotated[Principal, Depends(scoped(Scope.ACCOUNTS_READ))]
AccountsWriter = Annotated[Principal, Depends(scoped(Scope.ACCOUNTS_WRITE))]
MailReader = Annotated[Principal, Depends(scoped(Scope.MAIL_READ))]
_PROBLEMS = problems(400, 401, 403, 404, 422, 429)


@router.post(
    "/api/sync/imap/{account_id}",
    operation_id="request_sync",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=SyncRequested,
    responses=_PROBLEMS,
)
async def request_sync(
    account_id: uuid.UUID,
    principal: AccountsWriter,
    session: SessionDep,
    resources: ResourcesDep,
    full: Annotated[
        bool, Query(description="Drop what is stored and fetch every mailbox again.")
    ] = False,
) -> SyncRequested:
    """Queue a sync of the account; poll the status URL for progress."""
    return await SyncService(session, principal.tenant_id, resources).request(account_id, full=full)


@hot_get(
    router,
    "/api/sync/status/{account_id}",
    operation_id="get_sync_status",
    response_model=SyncStatus,
    responses=_PROBLEMS,
)
async def get_sync_status(
    account_id: uuid.UUID, principal: AccountsReader, reads: ReadsDep, resources: ResourcesDep
) -> Response:
    """Connection state, last error, per-mailbox progress and IDLE status of an account."""
    progress = SyncProgress(reads, principal.tenant_id, redis=resources.redis)
    return Response(content=await progress.status(account_id), media_type="application/json")


@hot_get(
    router,
    "/api/accounts/{account_id}/mailboxes",
    operation_id="list_mailboxes",
    response_model=MailboxList,
    responses=_PROBLEMS,
    tags=["accounts"],
)
async def list_mailboxes(
    account_id: uuid.UUID, principal: MailReader, reads: ReadsDep, resources: ResourcesDep
) -> Response:
    """The account's mailboxes with their roles and sync progress, INBOX first."""
    progress = SyncProgress(reads, principal.tenant_id, redis=resources.redis)
    return Response(content=await progress.mailboxes(account_id), media_type="application/json")
