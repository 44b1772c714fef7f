"""One account's page: its mailboxes, and its events, live over Server-Sent Events."""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Query, Request
from starlette.responses import Response

from mailsvc.account.service import AccountService, to_out
from mailsvc.auth.scopes import Scope
from mailsvc.console.dependencies import Operator, viewing
from mailsvc.console.rendering import SECURITY_HEADERS, render, render_fragment
from mailsvc.console.routing import ConsoleRoute
from mailsvc.event.endpoints import EventStreamResponse
from mailsvc.event.feed import EventReader, Selection, parse_cursor, recent_events
from mailsvc.event.listener import ChangeListener
from mailsvc.event.schemas import FEED_CURSOR_PATTERN, Event, encode_position
from mailsvc.kit.draining import Drain
from mailsvc.kit.http import ReadsDep, ReadSessionDep, ResourcesDep, SessionDep, provided
from mailsvc.sync.service import SyncProgress

router = APIRouter(route_class=ConsoleRoute)

# The page shows the account (accounts:read) and its events (mail:read, as the API's
# event stream needs).
AccountViewer = Annotated[Operator, Depends(viewing(Scope.ACCOUNTS_READ))]
EventViewer = Annotated[Operator, Depends(viewing(Scope.MAIL_READ))]

RECENT_EVENTS = 50
# Rows the live list keeps as new events arrive (static/console.js drops older ones).
KEEP_EVENTS = 200
_PAYLOAD_PREVIEW_CHARS = 300
# The SSE event name the page's list swaps in (sse-swap in account.html).
SSE_EVENT_NAME = "account-event"
CursorValue = Annotated[str | None, Query(max_length=40, pattern=FEED_CURSOR_PATTERN)]


def event_row(event: Event) -> dict[str, object]:
    """What the events table shows of an event: its type, number, time and payload."""
    data = event.model_dump(mode="json")["data"]
    preview = json.dumps(data, ensure_ascii=False, separators=(", ", ": "))
    if len(preview) > _PAYLOAD_PREVIEW_CHARS:
        preview = preview[: _PAYLOAD_PREVIEW_CHARS - 1] + "…"
    return {
        "id": event.id,
        "type": event.type,
        "seq": event.seq,
        "created_at": event.created_at,
        "preview": preview,
    }


@router.get("/console/{tenant}/accounts/{account_id}")
async def account_page(
    request: Request,
    account_id: uuid.UUID,
    operator: AccountViewer,
    session: SessionDep,
    reads: ReadsDep,
    resources: ResourcesDep,
) -> Response:
    """The account's state, mailboxes with counts and errors, and its recent events."""
    account = to_out(await AccountService(session, operator.tenant_id, resources).get(account_id))
    progress = SyncProgress(reads, operator.tenant_id, redis=resources.redis)
    (status,) = await progress.statuses([account_id])
    can_read_events = Scope.MAIL_READ.value in operator.principal.scopes
    events: list[dict[str, object]] = []
    follow_from = None
    if can_read_events:
        recent, position = await recent_events(
            session, operator.tenant_id, account_id, limit=RECENT_EVENTS
        )
        events = [event_row(event) for event in recent]
        follow_from = encode_position(position)
    return render(
        request,
        "account.html",
        {
            **operator.page_context("accounts"),
            "account": account,
            "status": status,
            "events": events,
            "follow_from": follow_from,
            "sse_event_name": SSE_EVENT_NAME,
            "keep_events": KEEP_EVENTS,
        },
    )


@router.get("/console/{tenant}/accounts/{account_id}/events")
async def account_events(
    account_id: uuid.UUID,
    operator: EventViewer,
    session: ReadSessionDep,
    resources: ResourcesDep,
    changes: Annotated[ChangeListener, Depends(provided(ChangeListener))],
    drain: Annotated[Drain, Depends(provided(Drain))],
    after: CursorValue = None,
    last_event_id: Annotated[
        str | None, Header(alias="Last-Event-ID", max_length=40, pattern=FEED_CURSOR_PATTERN)
    ] = None,
) -> Response:
    """The account's events after `after` as table rows, over Server-Sent Events.

    EventSource reconnects with `Last-Event-ID`, which wins over `after`, so a
    reconnect neither repeats nor skips a row.
    """
    await AccountService(session, operator.tenant_id, resources).get(account_id)
    resume = last_event_id or after
    reader = EventReader(
        resources.read_sessionmaker,
        changes,
        operator.tenant_id,
        Selection(account_id=account_id, types=()),
    )
    position = await reader.start(None if resume is None else parse_cursor(resume, field="after"))
    settings = resources.settings

    async def frames() -> AsyncIterator[bytes]:
        yield b"retry: 2000\n\n"
        events = reader.follow(position, keepalive_seconds=settings.events_keepalive_seconds)
        async with contextlib.aclosing(events), contextlib.aclosing(drain.until(events)) as live:
            async for event in live:
                yield b": keepalive\n\n" if event is None else _frame(event)

    stream = EventStreamResponse(frames(), send_timeout=settings.events_send_timeout_seconds)
    # Like every console response (the stream's own Cache-Control stays).
    for name, value in SECURITY_HEADERS.items():
        stream.headers.setdefault(name, value)
    return stream


def _frame(event: Event) -> bytes:
    row = render_fragment("event_row.html", {"event": event_row(event)})
    data = "".join(f"data: {line}\n" for line in row.splitlines() or [""])
    return f"id: {event.id}\nevent: {SSE_EVENT_NAME}\n{data}\n".encode()
