"""`/api/compose` and `/api/drafts`: compose drafts, attach files, and send them."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, File, Form, Query, Response, UploadFile, status

from mailsvc.auth.dependencies import Principal, scoped
from mailsvc.auth.scopes import Scope
from mailsvc.draft import schemas
from mailsvc.draft.service import DraftService
from mailsvc.errors import problems
from mailsvc.kit.http import ReadSessionDep, ResourcesDep, SessionDep
from mailsvc.kit.pagination import CursorQuery
from mailsvc.outbox.endpoints import DispatcherDep, IdempotencyKey, replayed
from mailsvc.outbox.schemas import OutboxOut, ScheduleRequest

router = APIRouter(tags=["drafts"])

DraftReader = Annotated[Principal, Depends(scoped(Scope.MAIL_READ))]
DraftWriter = Annotated[Principal, Depends(scoped(Scope.MAIL_WRITE))]
Sender = Annotated[Principal, Depends(scoped(Scope.MAIL_SEND))]
# 400: a body that cannot be read, or a multi-tenant token without X-Tenant-ID.
_AUTH = (400, 401, 403, 429)
_CREATED: dict[int | str, dict[str, Any]] = {
    201: {"model": schemas.DraftOut, "description": "A new draft was created."}
}


def _located(response: Response, draft: schemas.DraftOut) -> schemas.DraftOut:
    response.headers["Location"] = f"/api/drafts/{draft.id}"
    return draft


@router.post(
    "/api/compose",
    operation_id="create_draft",
    status_code=status.HTTP_201_CREATED,
    response_model=schemas.DraftOut,
    responses=problems(*_AUTH, 422),
)
async def create_draft(
    body: schemas.DraftIn,
    principal: DraftWriter,
    session: SessionDep,
    resources: ResourcesDep,
    response: Response,
) -> schemas.DraftOut:
    """Start a draft; it may lack recipients until it is sent.

    With the account's `send_options.save_drafts`, a copy goes to its Drafts mailbox
    as soon as the draft has a recipient.
    """
    draft = await DraftService(session, principal.tenant_id, resources).create(body)
    return _located(response, draft)


@router.post(
    "/api/compose/draft",
    operation_id="save_draft",
    response_model=schemas.DraftOut,
    responses={**_CREATED, **problems(*_AUTH, 404, 422)},
)
async def save_draft(
    body: schemas.DraftSave,
    principal: DraftWriter,
    session: SessionDep,
    resources: ResourcesDep,
    response: Response,
) -> schemas.DraftOut:
    """Save a draft: with `id`, replace that draft's content (200); without, create one (201)."""
    draft, created = await DraftService(session, principal.tenant_id, resources).save(body)
    if created:
        response.status_code = status.HTTP_201_CREATED
        _located(response, draft)
    return draft


@router.get(
    "/api/drafts",
    operation_id="list_drafts",
    response_model=schemas.DraftPage,
    responses=problems(*_AUTH, 422),
)
async def list_drafts(
    principal: DraftReader,
    session: ReadSessionDep,
    resources: ResourcesDep,
    account_id: Annotated[uuid.UUID | None, Query(description="Only this account's.")] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: CursorQuery = None,
) -> schemas.DraftPage:
    """List drafts, newest first, with their attachments (without content)."""
    return await DraftService(session, principal.tenant_id, resources).page(
        account_id=account_id, cursor=cursor, limit=limit
    )


@router.get(
    "/api/drafts/{draft_id}",
    operation_id="get_draft",
    response_model=schemas.DraftOut,
    responses=problems(*_AUTH, 404, 422),
)
async def get_draft(
    draft_id: uuid.UUID, principal: DraftReader, session: ReadSessionDep, resources: ResourcesDep
) -> schemas.DraftOut:
    """Read one draft."""
    return await DraftService(session, principal.tenant_id, resources).get(draft_id)


@router.put(
    "/api/drafts/{draft_id}",
    operation_id="replace_draft",
    response_model=schemas.DraftOut,
    responses=problems(*_AUTH, 404, 422),
)
async def replace_draft(
    draft_id: uuid.UUID,
    body: schemas.DraftIn,
    principal: DraftWriter,
    session: SessionDep,
    resources: ResourcesDep,
) -> schemas.DraftOut:
    """Replace a draft's content (its attachments stay); fields left out are cleared."""
    return await DraftService(session, principal.tenant_id, resources).replace(draft_id, body)


@router.delete(
    "/api/drafts/{draft_id}",
    operation_id="delete_draft",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=problems(*_AUTH, 404, 422),
)
async def delete_draft(
    draft_id: uuid.UUID, principal: DraftWriter, session: SessionDep, resources: ResourcesDep
) -> None:
    """Delete a draft, its attachments and its copy in the Drafts mailbox."""
    await DraftService(session, principal.tenant_id, resources).delete(draft_id)


@router.post(
    "/api/drafts/{draft_id}/attachments",
    operation_id="add_draft_attachment",
    status_code=status.HTTP_201_CREATED,
    response_model=schemas.DraftAttachmentOut,
    responses=problems(*_AUTH, 404, 413, 422),
)
async def add_draft_attachment(
    draft_id: uuid.UUID,
    principal: DraftWriter,
    session: SessionDep,
    resources: ResourcesDep,
    file: Annotated[
        UploadFile,
        File(description="The file; its part's filename and Content-Type are kept."),
    ],
    content_id: Annotated[
        str | None,
        Form(
            max_length=252,
            description="Makes it an inline part that the HTML body references as "
            "`cid:<content_id>` (e.g. an image).",
        ),
    ] = None,
) -> schemas.DraftAttachmentOut:
    """Attach a file to a draft (multipart/form-data).

    A draft's attachments hold at most `SEND_MAX_MESSAGE_BYTES` in all; past that the
    answer is 413 `attachment_too_large`.
    """
    return await DraftService(session, principal.tenant_id, resources).add_attachment(
        draft_id, file, content_id=content_id
    )


@router.delete(
    "/api/drafts/{draft_id}/attachments/{attachment_id}",
    operation_id="delete_draft_attachment",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=problems(*_AUTH, 404, 422),
)
async def delete_draft_attachment(
    draft_id: uuid.UUID,
    attachment_id: uuid.UUID,
    principal: DraftWriter,
    session: SessionDep,
    resources: ResourcesDep,
) -> None:
    """Remove an attachment from a draft."""
    await DraftService(session, principal.tenant_id, resources).delete_attachment(
        draft_id, attachment_id
    )


@router.post(
    "/api/compose/{draft_id}/send",
    operation_id="send_draft",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=OutboxOut,
    responses=problems(*_AUTH, 404, 409, 422),
)
async def send_draft(
    draft_id: uuid.UUID,
    principal: Sender,
    session: SessionDep,
    resources: ResourcesDep,
    dispatcher: DispatcherDep,
    response: Response,
    body: ScheduleRequest | None = None,
    idempotency_key: IdempotencyKey = None,
) -> OutboxOut:
    """Send a draft, at once or at `send_at`; the draft is deleted once queued.

    The whole message is checked now (at least one recipient); errors name the
    draft's fields as `draft.<field>`. The answer is the outbox entry to follow with
    `GET /api/outbox/{id}`. With an `Idempotency-Key`, a retry returns the first
    entry (with `Idempotent-Replayed: true`), also after the draft is gone.
    """
    entry, created = await DraftService(session, principal.tenant_id, resources).send(
        draft_id, body or ScheduleRequest(), idempotency_key=idempotency_key, dispatcher=dispatcher
    )
    replayed(response, created)
    return entry
