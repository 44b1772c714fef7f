"""`/api/messages`: list, search, read, stream, change, move and delete messages."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, status
from fastapi.responses import Response, StreamingResponse

from mailsvc.auth.dependencies import Principal, scoped
from mailsvc.auth.scopes import Scope
from mailsvc.errors import problems
from mailsvc.kit.datetimes import RFC3339DateTime
from mailsvc.kit.hot_route import hot_get
from mailsvc.kit.http import ReadsDep, ResourcesDep, SessionDep
from mailsvc.kit.pagination import CursorQuery
from mailsvc.kit.reads import ReadPool
from mailsvc.message import schemas
from mailsvc.message.actions import MessageActions, single
from mailsvc.message.lookup import MessageLookup
from mailsvc.message.service import ListRequest, MessageService
from mailsvc.message.stream import Download, StreamService
from mailsvc.search.backend import SearchBackend
from mailsvc.search.dependencies import SearchDep

router = APIRouter(tags=["messages"])

MailReader = Annotated[Principal, Depends(scoped(Scope.MAIL_READ))]
MailWriter = Annotated[Principal, Depends(scoped(Scope.MAIL_WRITE))]
PermanentQuery = Annotated[
    bool,
    Query(description="Expunge instead of moving to Trash (messages in Trash always are)."),
]
_PROBLEMS = problems(400, 401, 403, 404, 422, 429)
# A search while the tenant's index is being rebuilt answers 503 `search_rebuilding`.
_SEARCH_PROBLEMS = problems(400, 401, 403, 404, 422, 429, 503)
# A streamed download: raw bytes, which generated clients must not decode as JSON.
_BINARY: dict[str, Any] = {"schema": {"type": "string", "format": "binary"}}
_SERVER_PROBLEMS = problems(400, 401, 403, 404, 409, 422, 429, 502)

_Q_DESCRIPTION = (
    "Full-text search over subject, names and addresses, and body: words, "
    '`"phrases"`, `OR`, `-exclusions`, and Gmail-style operators `from:` `to:` '
    "`subject:` `has:attachment` `is:unread` `is:read` `is:starred` `before:` "
    "`after:` `in:` `label:` (docs/search.md)."
)


async def _list(
    principal: Principal, reads: ReadPool, search: SearchBackend, request: ListRequest
) -> Response:
    service = MessageService(reads, principal.tenant_id, search=search)
    return Response(content=await service.page_json(request), media_type="application/json")


@hot_get(
    router,
    "/api/messages",
    operation_id="list_messages",
    response_model=schemas.MessagePage,
    responses=_SEARCH_PROBLEMS,
)
async def list_messages(
    principal: MailReader,
    reads: ReadsDep,
    search: SearchDep,
    account_id: uuid.UUID | None = None,
    mailbox: Annotated[
        str | None,
        Query(
            max_length=64,
            pattern=schemas.MAILBOX_PATTERN,
            description="A mailbox id, or a role: `inbox`, `sent`, ...",
        ),
    ] = None,
    thread_id: uuid.UUID | None = None,
    unread: bool | None = None,
    flagged: bool | None = None,
    has_attachments: bool | None = None,
    from_: Annotated[
        str | None,
        Query(
            alias="from",
            max_length=320,
            pattern=schemas.TEXT_PATTERN,
            description="A word of a From name or address.",
        ),
    ] = None,
    to: Annotated[
        str | None,
        Query(
            max_length=320,
            pattern=schemas.TEXT_PATTERN,
            description="A word of a To, Cc or Bcc name or address.",
        ),
    ] = None,
    after: Annotated[
        RFC3339DateTime | None, Query(description="Received at or after this time.")
    ] = None,
    before: Annotated[
        RFC3339DateTime | None, Query(description="Received before this time.")
    ] = None,
    q: Annotated[
        str | None,
        Query(max_length=1000, pattern=schemas.TEXT_PATTERN, description=_Q_DESCRIPTION),
    ] = None,
    label: Annotated[
        list[schemas.Label] | None,
        Query(
            max_length=20,
            description="Gmail: messages carrying this label, exactly as `labels` shows "
            "it (`\\Inbox`, `Work`). Repeat it for messages carrying all of them. "
            "Lists nothing on other servers.",
        ),
    ] = None,
    order: Annotated[
        schemas.SortOrder,
        Query(description="`relevance` applies to searches; lists sort by date."),
    ] = "newest",
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: CursorQuery = None,
) -> Response:
    """List or search messages, newest first, with keyset paging."""
    return await _list(
        principal,
        reads,
        search,
        ListRequest(
            account_id=account_id,
            mailbox=mailbox,
            thread_id=thread_id,
            unread=unread,
            flagged=flagged,
            has_attachments=has_attachments,
            from_=from_,
            to=to,
            after=after,
            before=before,
            q=q,
            labels=tuple(label or ()),
            order=order,
            limit=limit,
            cursor=cursor,
        ),
    )


@hot_get(
    router,
    "/api/sync/search",
    operation_id="search_messages",
    response_model=schemas.MessagePage,
    responses=_SEARCH_PROBLEMS,
    tags=["search"],
)
async def search_messages(
    principal: MailReader,
    reads: ReadsDep,
    search: SearchDep,
    query: Annotated[
        str,
        Query(
            min_length=1, max_length=1000, pattern=schemas.TEXT_PATTERN, description=_Q_DESCRIPTION
        ),
    ],
    account_id: uuid.UUID | None = None,
    order: schemas.SortOrder = "relevance",
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: CursorQuery = None,
) -> Response:
    """Search messages (the original path; `GET /api/messages?q=` has every filter)."""
    return await _list(
        principal,
        reads,
        search,
        ListRequest(
            account_id=account_id,
            q=query,
            q_field="query",
            order=order,
            limit=limit,
            cursor=cursor,
        ),
    )


@hot_get(
    router,
    "/api/messages/{message_id}",
    operation_id="get_message",
    response_model=schemas.MessageOut,
    responses=_PROBLEMS,
)
async def get_message(
    message_id: uuid.UUID,
    principal: MailReader,
    reads: ReadsDep,
    allow_remote: Annotated[
        bool, Query(description="Keep remote images and styles in the HTML body.")
    ] = False,
) -> Response:
    """Read one message: headers, bodies, reply text and attachments."""
    body = await MessageService(reads, principal.tenant_id).get(
        message_id, allow_remote=allow_remote
    )
    return Response(content=body, media_type="application/json")


def _streamed(download: Download) -> StreamingResponse:
    return StreamingResponse(
        download.body, media_type=download.media_type, headers=download.headers
    )


@router.get(
    "/api/messages/{message_id}/raw",
    operation_id="get_message_raw",
    response_class=StreamingResponse,
    responses={
        200: {"content": {"message/rfc822": _BINARY}, "description": "The RFC 822 source."},
        **_SERVER_PROBLEMS,
    },
)
async def get_message_raw(
    message_id: uuid.UUID, principal: MailReader, session: SessionDep, resources: ResourcesDep
) -> StreamingResponse:
    """Stream the message's RFC 822 source from the mail server."""
    return _streamed(await StreamService(session, principal.tenant_id, resources).raw(message_id))


@router.get(
    "/api/messages/{message_id}/attachments/{attachment_id}",
    operation_id="get_attachment",
    response_class=StreamingResponse,
    responses={
        200: {
            "content": {"application/octet-stream": _BINARY},
            "description": "The decoded attachment, with its type and file name.",
        },
        **_SERVER_PROBLEMS,
    },
)
async def get_attachment(
    message_id: uuid.UUID,
    attachment_id: uuid.UUID,
    principal: MailReader,
    session: SessionDep,
    resources: ResourcesDep,
) -> StreamingResponse:
    """Stream one attachment, decoded, from the mail server."""
    service = StreamService(session, principal.tenant_id, resources)
    return _streamed(await service.attachment(message_id, attachment_id))


@router.post(
    "/api/messages/bulk/flags",
    operation_id="bulk_update_flags",
    response_model=schemas.BulkResult,
    responses=_SERVER_PROBLEMS,
)
async def bulk_update_flags(
    body: schemas.BulkFlagsUpdate,
    principal: MailWriter,
    session: SessionDep,
    resources: ResourcesDep,
) -> schemas.BulkResult:
    """Set or clear flags on many messages, on their servers first."""
    return await MessageActions(session, principal.tenant_id, resources).set_flags(
        body.ids, body.flags
    )


@router.post(
    "/api/messages/bulk/move",
    operation_id="bulk_move_messages",
    response_model=schemas.BulkResult,
    responses=_SERVER_PROBLEMS,
)
async def bulk_move_messages(
    body: schemas.BulkMove, principal: MailWriter, session: SessionDep, resources: ResourcesDep
) -> schemas.BulkResult:
    """Move many messages to a mailbox (or role) of their account."""
    return await MessageActions(session, principal.tenant_id, resources).move(body.ids, body.to)


@router.post(
    "/api/messages/bulk/delete",
    operation_id="bulk_delete_messages",
    response_model=schemas.BulkResult,
    responses=_SERVER_PROBLEMS,
)
async def bulk_delete_messages(
    body: schemas.BulkIds,
    principal: MailWriter,
    session: SessionDep,
    resources: ResourcesDep,
    permanent: PermanentQuery = False,
) -> schemas.BulkResult:
    """Move many messages to Trash, or expunge them."""
    return await MessageActions(session, principal.tenant_id, resources).delete(
        body.ids, permanent=permanent
    )


@router.patch(
    "/api/messages/{message_id}",
    operation_id="update_message_flags",
    response_model=schemas.MessageSummary,
    responses=_SERVER_PROBLEMS,
)
async def update_message_flags(
    message_id: uuid.UUID,
    body: schemas.FlagsUpdate,
    principal: MailWriter,
    session: SessionDep,
    resources: ResourcesDep,
) -> schemas.MessageSummary:
    """Mark read or unread, star, answered, custom keywords; on the server first."""
    single(
        await MessageActions(session, principal.tenant_id, resources).set_flags([message_id], body)
    )
    return await MessageLookup(session, principal.tenant_id).summary(message_id)


@router.post(
    "/api/messages/{message_id}/labels",
    operation_id="update_message_labels",
    response_model=schemas.MessageSummary,
    responses=_SERVER_PROBLEMS,
)
async def update_message_labels(
    message_id: uuid.UUID,
    body: schemas.LabelsUpdate,
    principal: MailWriter,
    session: SessionDep,
    resources: ResourcesDep,
) -> schemas.MessageSummary:
    """Add or remove Gmail labels of a message (X-GM-LABELS), on the server first."""
    single(
        await MessageActions(session, principal.tenant_id, resources).set_labels([message_id], body)
    )
    return await MessageLookup(session, principal.tenant_id).summary(message_id)


@router.post(
    "/api/messages/{message_id}/move",
    operation_id="move_message",
    response_model=schemas.MessageSummary,
    responses=_SERVER_PROBLEMS,
)
async def move_message(
    message_id: uuid.UUID,
    body: schemas.MoveRequest,
    principal: MailWriter,
    session: SessionDep,
    resources: ResourcesDep,
) -> schemas.MessageSummary:
    """Move a message to another mailbox of its account (MOVE, or COPY + EXPUNGE)."""
    single(await MessageActions(session, principal.tenant_id, resources).move([message_id], body))
    return await MessageLookup(session, principal.tenant_id).summary(message_id)


@router.delete(
    "/api/messages/{message_id}",
    operation_id="delete_message",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=_SERVER_PROBLEMS,
)
async def delete_message(
    message_id: uuid.UUID,
    principal: MailWriter,
    session: SessionDep,
    resources: ResourcesDep,
    permanent: PermanentQuery = False,
) -> None:
    """Move a message to Trash, or expunge it (`permanent=true`)."""
    actions = MessageActions(session, principal.tenant_id, resources)
    single(await actions.delete([message_id], permanent=permanent))
