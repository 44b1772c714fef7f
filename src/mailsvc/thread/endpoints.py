"""`/api/threads`: conversations, newest activity first, and one with its messages."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Response

from mailsvc.auth.dependencies import Principal, scoped
from mailsvc.auth.scopes import Scope
from mailsvc.errors import problems
from mailsvc.kit.datetimes import RFC3339DateTime
from mailsvc.kit.hot_route import hot_get
from mailsvc.kit.http import ReadsDep, SessionDep
from mailsvc.kit.pagination import CursorQuery
from mailsvc.message.schemas import MAILBOX_PATTERN, TEXT_PATTERN
from mailsvc.message.service import ListRequest
from mailsvc.search.dependencies import SearchDep
from mailsvc.thread import schemas
from mailsvc.thread.service import ThreadService, thread_out

router = APIRouter(prefix="/api/threads", tags=["threads"])

MailReader = Annotated[Principal, Depends(scoped(Scope.MAIL_READ))]
_PROBLEMS = problems(400, 401, 403, 404, 422, 429)
_SEARCH_PROBLEMS = problems(400, 401, 403, 404, 422, 429, 503)


@hot_get(
    router,
    "",
    operation_id="list_threads",
    response_model=schemas.ThreadPage,
    responses=_SEARCH_PROBLEMS,
)
async def list_threads(
    principal: MailReader,
    reads: ReadsDep,
    search: SearchDep,
    account_id: uuid.UUID | None = None,
    mailbox: Annotated[
        str | None,
        Query(
            max_length=64,
            pattern=MAILBOX_PATTERN,
            description="Threads with a message in this mailbox id or role.",
        ),
    ] = None,
    unread: bool | None = None,
    flagged: bool | None = None,
    has_attachments: bool | None = None,
    from_: Annotated[str | None, Query(alias="from", max_length=320, pattern=TEXT_PATTERN)] = None,
    to: Annotated[str | None, Query(max_length=320, pattern=TEXT_PATTERN)] = None,
    after: RFC3339DateTime | None = None,
    before: RFC3339DateTime | None = None,
    q: Annotated[
        str | None,
        Query(
            max_length=1000,
            pattern=TEXT_PATTERN,
            description="Threads with a message matching this search.",
        ),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: CursorQuery = None,
) -> Response:
    """List threads with a message matching the filters, newest activity first."""
    request = ListRequest(
        account_id=account_id,
        mailbox=mailbox,
        unread=unread,
        flagged=flagged,
        has_attachments=has_attachments,
        from_=from_,
        to=to,
        after=after,
        before=before,
        q=q,
        limit=limit,
        cursor=cursor,
    )
    body = await ThreadService(reads, principal.tenant_id, search=search).page(request)
    return Response(content=body, media_type="application/json")


@router.get(
    "/{thread_id}", operation_id="get_thread", response_model=schemas.ThreadOut, responses=_PROBLEMS
)
async def get_thread(
    thread_id: uuid.UUID, principal: MailReader, session: SessionDep
) -> schemas.ThreadOut:
    """Read a thread with its messages, oldest first."""
    return await thread_out(session, principal.tenant_id, thread_id)
