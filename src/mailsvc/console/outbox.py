"""The outbox page: what is queued, scheduled, retrying, sent, failed or bounced."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from starlette.responses import Response

from mailsvc.auth.scopes import Scope
from mailsvc.console.dependencies import Action, Operator, acting, viewing
from mailsvc.console.rendering import redirect, render
from mailsvc.console.routing import ConsoleRoute
from mailsvc.kit.http import ResourcesDep, SessionDep, provided
from mailsvc.kit.pagination import CursorQuery
from mailsvc.outbox import schemas
from mailsvc.outbox.dispatch import OutboxDispatcher
from mailsvc.outbox.service import OutboxService

router = APIRouter(route_class=ConsoleRoute)

Viewer = Annotated[Operator, Depends(viewing(Scope.MAIL_READ))]
Sender = Annotated[Action, Depends(acting(Scope.MAIL_SEND))]
DispatcherDep = Annotated[OutboxDispatcher, Depends(provided(OutboxDispatcher))]

PAGE_SIZE = 50
STATUSES: tuple[str, ...] = ("queued", "sending", "sent", "failed", "cancelled", "bounced")


def stage(entry: schemas.OutboxOut, now: datetime) -> str:
    """What a `queued` entry waits for: its time (scheduled) or its next retry."""
    if entry.status != "queued":
        return entry.status
    if entry.attempts > 0:
        return "retrying"
    if entry.send_at is not None and entry.send_at > now:
        return "scheduled"
    return "queued"


@router.get("/console/{tenant}/outbox")
async def outbox_page(
    request: Request,
    operator: Viewer,
    session: SessionDep,
    resources: ResourcesDep,
    status: Annotated[schemas.OutboxStatus | None, Query()] = None,
    cursor: CursorQuery = None,
) -> Response:
    """Sends, newest first, with the SMTP server's last reply; cancel and retry."""
    page = await OutboxService(session, operator.tenant_id, resources).page(
        account_id=None, status=status, cursor=cursor, limit=PAGE_SIZE
    )
    now = datetime.now(UTC)
    return render(
        request,
        "outbox.html",
        {
            **operator.page_context("outbox"),
            "entries": [(entry, stage(entry, now)) for entry in page.items],
            "status": status,
            "statuses": STATUSES,
            "cursor": cursor,
            "next_cursor": page.next_cursor,
        },
    )


@router.post("/console/{tenant}/outbox/{outbox_id}/cancel")
async def cancel_send(
    request: Request,
    outbox_id: uuid.UUID,
    action: Sender,
    session: SessionDep,
    resources: ResourcesDep,
) -> Response:
    """Cancel a send that is still queued."""
    entry = await OutboxService(session, action.operator.tenant_id, resources).cancel(outbox_id)
    return redirect(
        request,
        f"/console/{action.operator.tenant_id}/outbox",
        notice=f"Send {entry.id} cancelled.",
    )


@router.post("/console/{tenant}/outbox/{outbox_id}/retry")
async def retry_send(
    request: Request,
    outbox_id: uuid.UUID,
    action: Sender,
    session: SessionDep,
    resources: ResourcesDep,
    dispatcher: DispatcherDep,
) -> Response:
    """Send a queued or failed message now."""
    service = OutboxService(session, action.operator.tenant_id, resources)
    entry = await service.retry(outbox_id, dispatcher=dispatcher)
    return redirect(
        request,
        f"/console/{action.operator.tenant_id}/outbox",
        notice=f"Send {entry.id} is being sent now.",
    )
