"""`/api/webhooks`: register endpoints for the tenant's events, and follow deliveries."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Response, status

from mailsvc.auth.dependencies import Principal, scoped
from mailsvc.auth.scopes import Scope
from mailsvc.errors import problems
from mailsvc.kit.http import ReadSessionDep, ResourcesDep, SessionDep
from mailsvc.kit.pagination import CursorQuery
from mailsvc.webhook import schemas
from mailsvc.webhook.service import WebhookService, to_out

router = APIRouter(prefix="/api/webhooks", tags=["webhooks"])

Manager = Annotated[Principal, Depends(scoped(Scope.WEBHOOKS))]
Limit = Annotated[int, Query(ge=1, le=200)]
# 400: a body that cannot be read, or a multi-tenant token without X-Tenant-ID.
_AUTH_PROBLEMS = (400, 401, 403, 429)


@router.post(
    "",
    operation_id="create_webhook",
    status_code=status.HTTP_201_CREATED,
    response_model=schemas.WebhookCreated,
    responses=problems(*_AUTH_PROBLEMS, 422),
)
async def create_webhook(
    body: schemas.WebhookCreate,
    principal: Manager,
    session: SessionDep,
    resources: ResourcesDep,
    response: Response,
) -> schemas.WebhookCreated:
    """Register an endpoint; the answer holds its signing secret, shown this once.

    It receives the events committed from now on (not the history), each signed
    (docs/events.md, "Webhooks").
    """
    created = await WebhookService(session, principal.tenant_id, resources).create(body)
    response.headers["Location"] = f"/api/webhooks/{created.id}"
    return created


@router.get(
    "",
    operation_id="list_webhooks",
    response_model=schemas.WebhookPage,
    responses=problems(*_AUTH_PROBLEMS, 422),
)
async def list_webhooks(
    principal: Manager,
    session: ReadSessionDep,
    resources: ResourcesDep,
    limit: Limit = 50,
    cursor: CursorQuery = None,
) -> schemas.WebhookPage:
    """List the tenant's webhooks, oldest first."""
    return await WebhookService(session, principal.tenant_id, resources).page(
        cursor=cursor, limit=limit
    )


@router.get(
    "/{webhook_id}",
    operation_id="get_webhook",
    response_model=schemas.WebhookOut,
    responses=problems(*_AUTH_PROBLEMS, 404, 422),
)
async def get_webhook(
    webhook_id: uuid.UUID, principal: Manager, session: ReadSessionDep, resources: ResourcesDep
) -> schemas.WebhookOut:
    """Read one webhook: settings, whether it is active, and why it was disabled."""
    return to_out(await WebhookService(session, principal.tenant_id, resources).get(webhook_id))


@router.put(
    "/{webhook_id}",
    operation_id="update_webhook",
    response_model=schemas.WebhookOut,
    responses=problems(*_AUTH_PROBLEMS, 404, 422),
)
async def update_webhook(
    webhook_id: uuid.UUID,
    body: schemas.WebhookUpdate,
    principal: Manager,
    session: SessionDep,
    resources: ResourcesDep,
) -> schemas.WebhookOut:
    """Replace a webhook's settings; `active: true` re-enables a disabled one."""
    service = WebhookService(session, principal.tenant_id, resources)
    return to_out(await service.update(webhook_id, body))


@router.delete(
    "/{webhook_id}",
    operation_id="delete_webhook",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=problems(*_AUTH_PROBLEMS, 404, 422),
)
async def delete_webhook(
    webhook_id: uuid.UUID, principal: Manager, session: SessionDep, resources: ResourcesDep
) -> None:
    """Delete a webhook and its delivery history; nothing more is sent to it."""
    await WebhookService(session, principal.tenant_id, resources).delete(webhook_id)


@router.post(
    "/{webhook_id}/test",
    operation_id="test_webhook",
    response_model=schemas.WebhookTestResult,
    responses=problems(*_AUTH_PROBLEMS, 404, 422),
)
async def test_webhook(
    webhook_id: uuid.UUID, principal: Manager, session: ReadSessionDep, resources: ResourcesDep
) -> schemas.WebhookTestResult:
    """Send a signed `webhook.test` event now and report what the receiver answered."""
    return await WebhookService(session, principal.tenant_id, resources).send_test(webhook_id)


@router.get(
    "/{webhook_id}/deliveries",
    operation_id="list_webhook_deliveries",
    response_model=schemas.DeliveryPage,
    responses=problems(*_AUTH_PROBLEMS, 404, 422),
)
async def list_webhook_deliveries(
    webhook_id: uuid.UUID,
    principal: Manager,
    session: ReadSessionDep,
    resources: ResourcesDep,
    status_: Annotated[
        schemas.DeliveryStatus | None, Query(alias="status", description="Only this status.")
    ] = None,
    limit: Limit = 50,
    cursor: CursorQuery = None,
) -> schemas.DeliveryPage:
    """A webhook's deliveries, newest first: status, attempts, the receiver's answers."""
    return await WebhookService(session, principal.tenant_id, resources).deliveries(
        webhook_id, status=status_, cursor=cursor, limit=limit
    )
