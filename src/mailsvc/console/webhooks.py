"""The webhooks page: each endpoint's health, its deliveries, test and re-enable."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from starlette.responses import Response

from mailsvc.auth.scopes import Scope
from mailsvc.console.dependencies import Action, Operator, acting, viewing
from mailsvc.console.rendering import redirect, render
from mailsvc.console.routing import ConsoleRoute
from mailsvc.kit.http import ResourcesDep, SessionDep
from mailsvc.kit.pagination import CursorQuery
from mailsvc.webhook import schemas
from mailsvc.webhook.service import WebhookService, to_out

router = APIRouter(route_class=ConsoleRoute)

Viewer = Annotated[Operator, Depends(viewing(Scope.WEBHOOKS))]
Manager = Annotated[Action, Depends(acting(Scope.WEBHOOKS))]

PAGE_SIZE = 50


@router.get("/console/{tenant}/webhooks")
async def webhooks_page(
    request: Request,
    operator: Viewer,
    session: SessionDep,
    resources: ResourcesDep,
    cursor: CursorQuery = None,
) -> Response:
    """Every webhook: active or disabled (and why), failures in a row, actions."""
    page = await WebhookService(session, operator.tenant_id, resources).page(
        cursor=cursor, limit=PAGE_SIZE
    )
    return render(
        request,
        "webhooks.html",
        {
            **operator.page_context("webhooks"),
            "webhooks": page.items,
            "cursor": cursor,
            "next_cursor": page.next_cursor,
        },
    )


@router.get("/console/{tenant}/webhooks/{webhook_id}")
async def webhook_page(
    request: Request,
    webhook_id: uuid.UUID,
    operator: Viewer,
    session: SessionDep,
    resources: ResourcesDep,
    cursor: CursorQuery = None,
) -> Response:
    """One webhook's deliveries, newest first, with status and latency."""
    service = WebhookService(session, operator.tenant_id, resources)
    webhook = to_out(await service.get(webhook_id))
    deliveries = await service.deliveries(webhook_id, status=None, cursor=cursor, limit=PAGE_SIZE)
    return render(
        request,
        "webhook.html",
        {
            **operator.page_context("webhooks"),
            "webhook": webhook,
            "deliveries": deliveries.items,
            "cursor": cursor,
            "next_cursor": deliveries.next_cursor,
        },
    )


@router.post("/console/{tenant}/webhooks/{webhook_id}/test")
async def test_webhook(
    request: Request,
    webhook_id: uuid.UUID,
    action: Manager,
    session: SessionDep,
    resources: ResourcesDep,
) -> Response:
    """Send a signed `webhook.test` event now and show what the receiver answered."""
    result = await WebhookService(session, action.operator.tenant_id, resources).send_test(
        webhook_id
    )
    path = f"/console/{action.operator.tenant_id}/webhooks"
    if result.delivered:
        return redirect(
            request, path, notice=f"Test delivered: HTTP {result.status_code}{_took(result)}."
        )
    answer = f"HTTP {result.status_code}" if result.status_code is not None else "no answer"
    return redirect(
        request, path, error=f"Test not delivered ({answer}{_took(result)}): {result.error}"
    )


def _took(result: schemas.WebhookTestResult) -> str:
    return "" if result.duration_ms is None else f" in {result.duration_ms} ms"


@router.post("/console/{tenant}/webhooks/{webhook_id}/enable")
async def enable_webhook(
    request: Request,
    webhook_id: uuid.UUID,
    action: Manager,
    session: SessionDep,
    resources: ResourcesDep,
) -> Response:
    """Re-enable a disabled webhook: its waiting events are delivered, in order."""
    service = WebhookService(session, action.operator.tenant_id, resources)
    current = to_out(await service.get(webhook_id, for_update=True))
    await service.update(
        webhook_id,
        schemas.WebhookUpdate(
            url=current.url,
            event_types=current.event_types,
            description=current.description,
            active=True,
        ),
    )
    return redirect(
        request,
        f"/console/{action.operator.tenant_id}/webhooks",
        notice=f"Webhook {current.url} enabled.",
    )
