"""`/api/send` and `/api/outbox`: send messages and follow them until they are sent."""

from __future__ import annotations

import asyncio
import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Query, Response, status

from mailsvc.auth.dependencies import Principal, scoped
from mailsvc.auth.scopes import Scope
from mailsvc.compose.model import AttachmentSpec
from mailsvc.errors import problems
from mailsvc.kit.http import ResourcesDep, SessionDep, provided
from mailsvc.kit.pagination import CursorQuery
from mailsvc.outbox import schemas
from mailsvc.outbox.dispatch import OutboxDispatcher
from mailsvc.outbox.prepare import decode_attachments
from mailsvc.outbox.service import OutboxService, request_hash

router = APIRouter(tags=["sending"])

Sender = Annotated[Principal, Depends(scoped(Scope.MAIL_SEND))]
Reader = Annotated[Principal, Depends(scoped(Scope.MAIL_READ))]
IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=255,
        description="Makes a retried request safe: the same key with the same body "
        "returns the first request's outbox entry instead of sending again; with "
        "another body it is a 409.",
    ),
]
REPLAYED_HEADER = "Idempotent-Replayed"
# Runs immediate sends in this process.
DispatcherDep = Annotated[OutboxDispatcher, Depends(provided(OutboxDispatcher))]


def replayed(response: Response, created: bool) -> None:
    """Tell the client that an earlier request with its key answered this one."""
    if not created:
        response.headers[REPLAYED_HEADER] = "true"


def _fingerprint_and_files(body: schemas.SendRequest) -> tuple[str, list[AttachmentSpec]]:
    return request_hash("send", body.model_dump_json()), decode_attachments(body.attachments)


@router.post(
    "/api/send",
    operation_id="send_message",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=schemas.OutboxOut,
    responses=problems(400, 401, 403, 409, 422, 429),
)
async def send_message(
    principal: Sender,
    session: SessionDep,
    resources: ResourcesDep,
    dispatcher: DispatcherDep,
    body: schemas.SendRequest,
    response: Response,
    idempotency_key: IdempotencyKey = None,
) -> schemas.OutboxOut:
    """Send a message without a draft: at once, or at `send_at`.

    The answer is the outbox entry (`queued`, or `sending` already); follow it with
    `GET /api/outbox/{id}` or the change feed.
    """
    # Up to SEND_MAX_MESSAGE_BYTES of base64 to hash and decode: off the event loop.
    fingerprint, attachments = await asyncio.to_thread(_fingerprint_and_files, body)
    entry, created = await OutboxService(session, principal.tenant_id, resources).send(
        body,
        attachments,
        send_at=body.send_at,
        idempotency_key=idempotency_key,
        fingerprint=fingerprint,
        dispatcher=dispatcher,
    )
    replayed(response, created)
    return entry


@router.get(
    "/api/outbox",
    operation_id="list_outbox",
    response_model=schemas.OutboxPage,
    responses=problems(400, 401, 403, 422, 429),
)
async def list_outbox(
    principal: Reader,
    session: SessionDep,
    resources: ResourcesDep,
    account_id: uuid.UUID | None = None,
    status_: Annotated[
        schemas.OutboxStatus | None, Query(alias="status", description="Only this status.")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: CursorQuery = None,
) -> schemas.OutboxPage:
    """Messages sent or being sent, newest first."""
    return await OutboxService(session, principal.tenant_id, resources).page(
        account_id=account_id, status=status_, cursor=cursor, limit=limit
    )


@router.get(
    "/api/outbox/{outbox_id}",
    operation_id="get_outbox_entry",
    response_model=schemas.OutboxOut,
    responses=problems(400, 401, 403, 404, 422, 429),
)
async def get_outbox_entry(
    principal: Reader, session: SessionDep, resources: ResourcesDep, outbox_id: uuid.UUID
) -> schemas.OutboxOut:
    """One message's send status: attempts, next attempt, the server's last reply."""
    return await OutboxService(session, principal.tenant_id, resources).get(outbox_id)


@router.delete(
    "/api/outbox/{outbox_id}",
    operation_id="cancel_outbox_entry",
    response_model=schemas.OutboxOut,
    responses=problems(400, 401, 403, 404, 409, 422, 429),
)
async def cancel_outbox_entry(
    principal: Sender, session: SessionDep, resources: ResourcesDep, outbox_id: uuid.UUID
) -> schemas.OutboxOut:
    """Cancel a message that is still `queued` (scheduled, or waiting for a retry)."""
    return await OutboxService(session, principal.tenant_id, resources).cancel(outbox_id)


@router.post(
    "/api/outbox/{outbox_id}/retry",
    operation_id="retry_outbox_entry",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=schemas.OutboxOut,
    responses=problems(400, 401, 403, 404, 409, 422, 429),
)
async def retry_outbox_entry(
    principal: Sender,
    session: SessionDep,
    resources: ResourcesDep,
    dispatcher: DispatcherDep,
    outbox_id: uuid.UUID,
) -> schemas.OutboxOut:
    """Attempt a `queued` or `failed` message now.

    A scheduled message, or one waiting for a retry, goes out at once; a `failed`
    one is `queued` again with a fresh budget of attempts (same bytes, same
    Message-ID). Any other status is a `409 outbox_not_retryable`.
    """
    return await OutboxService(session, principal.tenant_id, resources).retry(
        outbox_id, dispatcher=dispatcher
    )
