"""`/api/changes` (the feed) and `/api/events` (Server-Sent Events)."""

from __future__ import annotations

import asyncio
import contextlib
import random
import re
import uuid
from collections.abc import AsyncIterator
from typing import Annotated, Any

import structlog
from fastapi import APIRouter, Depends, Header, Query
from pydantic import WithJsonSchema
from starlette.responses import StreamingResponse
from starlette.types import Send

from mailsvc.auth.dependencies import Principal, scoped
from mailsvc.auth.scopes import Scope
from mailsvc.errors import FieldError, UnprocessableError, problems
from mailsvc.event.feed import ChangePage, EventReader, Selection, parse_cursor, read_page
from mailsvc.event.listener import ChangeListener
from mailsvc.event.schemas import (
    EVENT_TYPES,
    FEED_CURSOR_PATTERN,
    Event,
    encode_position,
    event_json,
)
from mailsvc.kit.draining import Drain
from mailsvc.kit.http import ReadSessionDep, ResourcesDep, provided

log = structlog.get_logger("mailsvc.events")

router = APIRouter(tags=["events"])

# A stream ended by a shutdown asks its client to come back after this many ms.
RECONNECT_AFTER_DRAIN_MS = (500, 2000)

Reader = Annotated[Principal, Depends(scoped(Scope.MAIL_READ))]
_EVENT_TYPE = "|".join(re.escape(event_type) for event_type in EVENT_TYPES)
# Each value is an event type, or several joined by commas; the schema says exactly
# that, so generated clients get the enum and a fuzzer's schema-valid value is never
# refused. The check itself stays in _selection, whose `invalid_event_type` clients
# already branch on.
EventTypesValue = Annotated[
    str,
    WithJsonSchema(
        {
            "type": "string",
            "anyOf": [
                {"enum": list(EVENT_TYPES)},
                {"pattern": f"^({_EVENT_TYPE})(,({_EVENT_TYPE}))+$"},
            ],
        }
    ),
]
TypesQuery = Annotated[
    list[EventTypesValue] | None,
    Query(
        description="Only these event types (repeat the parameter, or separate with commas).",
        max_length=50,
    ),
]


def _selection(account_id: uuid.UUID | None, types: list[str] | None) -> Selection:
    # No blanks or spaces around the commas: the schema's pattern has none.
    wanted = tuple(t for value in types or () for t in value.split(","))
    unknown = sorted(set(wanted) - set(EVENT_TYPES))
    if unknown:
        raise UnprocessableError(
            f"unknown event types: {', '.join(map(repr, unknown))[:200]}",
            code="invalid_event_type",
            errors=[FieldError(field="query.types", message=f"one of {', '.join(EVENT_TYPES)}")],
        )
    return Selection(account_id=account_id, types=wanted)


@router.get(
    "/api/changes",
    operation_id="list_changes",
    response_model=ChangePage,
    responses=problems(400, 401, 403, 410, 422, 429),
)
async def list_changes(
    principal: Reader,
    session: ReadSessionDep,
    since: Annotated[
        str,
        Query(
            max_length=40,
            pattern=FEED_CURSOR_PATTERN,
            description="A `next_cursor` (or an event's `id`); `0` reads from the oldest "
            "event kept. A cursor older than CHANGE_RETENTION_DAYS answers 410 "
            "`cursor_expired`: resync, then start again from a new cursor.",
        ),
    ],
    account_id: uuid.UUID | None = None,
    types: TypesQuery = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> ChangePage:
    """The tenant's events after `since`, oldest first: each event exactly once.

    Events are ordered by commit; a reader that always continues from `next_cursor`
    never misses one, even while changes keep arriving.
    """
    position = parse_cursor(since, field="since")
    return await read_page(
        session, principal.tenant_id, position, _selection(account_id, types), limit
    )


class EventStreamResponse(StreamingResponse):
    """`text/event-stream` that drops a client that stops reading.

    The stream reads the feed only as fast as the client takes events, so nothing
    piles up in memory; a client that takes nothing for `send_timeout` seconds is
    disconnected and resumes with `Last-Event-ID` when it is ready.
    """

    media_type = "text/event-stream"

    def __init__(self, content: AsyncIterator[bytes], *, send_timeout: float) -> None:
        super().__init__(
            content,
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )
        self._send_timeout = send_timeout

    async def stream_response(self, send: Send) -> None:
        await send(
            {"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers}
        )
        body: Any = self.body_iterator
        async with contextlib.aclosing(body):
            async for chunk in body:
                try:
                    async with asyncio.timeout(self._send_timeout):
                        await send({"type": "http.response.body", "body": chunk, "more_body": True})
                except TimeoutError:
                    # The server then closes the connection (the response stays open-ended).
                    log.info("events.slow_client_dropped")
                    return
        await send({"type": "http.response.body", "body": b"", "more_body": False})


def _frame(event: Event | None) -> bytes:
    if event is None:
        return b": keep-alive\n\n"
    return b"id: %s\nevent: %s\ndata: %s\n\n" % (
        event.id.encode(),
        event.type.encode(),
        event_json(event),
    )


def _farewell(resume_at: str) -> bytes:
    """The last frame of a stream ended by draining: where to resume, and when.

    A frame without data dispatches no event but still sets EventSource's
    `lastEventId`, so the reconnect resumes right here even when this stream sent no
    event. The jittered delay spreads the clients of a stopping process over a
    moment, and by then the load balancer sends them to another process.
    """
    delay_ms = random.randint(*RECONNECT_AFTER_DRAIN_MS)
    return b": server shutting down, reconnect\nid: %s\nretry: %d\n\n" % (
        resume_at.encode(),
        delay_ms,
    )


@router.get(
    "/api/events",
    operation_id="stream_events",
    response_class=EventStreamResponse,
    status_code=200,
    responses={
        200: {
            "description": "Server-Sent Events: `id` (the feed position), `event` (the "
            "type) and `data` (the event as JSON, as in `GET /api/changes`).",
            # The stream is text; generators read it as such (an EventSource parses it).
            "content": {"text/event-stream": {"schema": {"type": "string"}}},
        },
        **problems(400, 401, 403, 410, 422, 429),
    },
)
async def stream_events(
    principal: Reader,
    resources: ResourcesDep,
    changes: Annotated[ChangeListener, Depends(provided(ChangeListener))],
    drain: Annotated[Drain, Depends(provided(Drain))],
    account_id: uuid.UUID | None = None,
    types: TypesQuery = None,
    since: Annotated[
        str | None,
        Query(
            max_length=40,
            pattern=FEED_CURSOR_PATTERN,
            description="Start after this cursor (default: from now on).",
        ),
    ] = None,
    last_event_id: Annotated[
        str | None,
        Header(
            alias="Last-Event-ID",
            max_length=40,
            pattern=FEED_CURSOR_PATTERN,
            description="Sent by EventSource on reconnect: resume after this event.",
        ),
    ] = None,
) -> EventStreamResponse:
    """The tenant's events as they happen, as Server-Sent Events.

    Resumes after `Last-Event-ID` (or `since`) without loss; a comment line every
    EVENTS_KEEPALIVE_SECONDS keeps idle connections open through proxies. When the
    serving process shuts down the stream ends with a frame carrying the `id` to
    resume from and a `retry` of a second or two.
    """
    resume = last_event_id or since
    field = "header.Last-Event-ID" if last_event_id else "query.since"
    reader = EventReader(
        resources.read_sessionmaker,
        changes,
        principal.tenant_id,
        _selection(account_id, types),
    )
    position = await reader.start(
        None if resume is None else parse_cursor(resume, field=field), field=field
    )
    settings = resources.settings

    async def frames() -> AsyncIterator[bytes]:
        yield b"retry: 2000\n\n"
        resume_at = encode_position(position)
        events = reader.follow(position, keepalive_seconds=settings.events_keepalive_seconds)
        async with contextlib.aclosing(events), contextlib.aclosing(drain.until(events)) as live:
            async for event in live:
                if event is not None:
                    resume_at = event.id
                yield _frame(event)
        # The feed never ends by itself: the process is draining. Ending the response
        # lets the shutdown go on; the client comes back (elsewhere) and misses nothing.
        yield _farewell(resume_at)

    return EventStreamResponse(frames(), send_timeout=settings.events_send_timeout_seconds)
