"""Server-Sent Events through a real uvicorn: live events, resuming, tenants, slow clients."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI

from mailsvc.app import create_app
from mailsvc.config import Settings
from mailsvc.event.endpoints import RECONNECT_AFTER_DRAIN_MS, EventStreamResponse
from mailsvc.event.feed import EventReader, Selection
from mailsvc.event.repository import ChangeRepository
from mailsvc.kit.draining import Drain
from mailsvc.runtime import Runtime
from mailsvc.sync.engine import SyncEngine
from tests.fixtures import imap_client
from tests.fixtures.app import TokenFactory
from tests.fixtures.dovecot import DovecotServer
from tests.fixtures.mail import SyncTarget
from tests.fixtures.net import LOOPBACK, free_port
from tests.fixtures.sse import arrived, collect_frames
from tests.fixtures.waiting import eventually
from tests.sync.messages import make_message

Headers = dict[str, str]


@contextlib.asynccontextmanager
async def _serving(app: FastAPI) -> AsyncIterator[str]:
    """`app` behind a real HTTP server (httpx's ASGI transport buffers bodies)."""
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host=LOOPBACK, port=port, lifespan="off", log_level="warning")
    )
    serving = asyncio.create_task(server.serve())

    async def started() -> bool:
        return server.started

    await eventually(started, within=10, what="uvicorn serving")
    try:
        yield f"http://{LOOPBACK}:{port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(serving, 10)


@pytest.fixture
async def base_url(app: FastAPI) -> AsyncIterator[str]:
    """The run's app behind a real HTTP server."""
    async with _serving(app) as url:
        yield url


@contextlib.asynccontextmanager
async def _stream(
    base_url: str, auth: Headers, *, params: dict[str, str] | None = None, **headers: str
) -> AsyncIterator[asyncio.Queue[dict[str, Any]]]:
    """Open `/api/events`; parsed events arrive on the queue."""
    received: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    opened = asyncio.Event()

    async def read() -> None:
        async with (
            httpx.AsyncClient(base_url=base_url, timeout=30) as client,
            client.stream(
                "GET", "/api/events", params=params, headers={**auth, **headers}
            ) as response,
        ):
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            opened.set()
            fields: dict[str, str] = {}
            async for line in response.aiter_lines():
                if line == "":
                    if "data" in fields:
                        received.put_nowait(
                            {
                                "id": fields["id"],
                                "event": fields["event"],
                                **json.loads(fields["data"]),
                            }
                        )
                    fields = {}
                elif not line.startswith(":"):
                    name, _, value = line.partition(": ")
                    fields[name] = value

    reader = asyncio.create_task(read())
    await asyncio.wait_for(opened.wait(), 10)
    try:
        yield received
    finally:
        reader.cancel()
        await asyncio.gather(reader, return_exceptions=True)


async def _take(queue: asyncio.Queue[dict[str, Any]], count: int) -> list[dict[str, Any]]:
    return [await asyncio.wait_for(queue.get(), 10) for _ in range(count)]


async def _new_mail(
    engine: SyncEngine, target: SyncTarget, dovecot: DovecotServer, first: int, count: int
) -> None:
    messages = [make_message(first + n)[1] for n in range(count)]
    await asyncio.to_thread(imap_client.append, dovecot, target.user, "INBOX", messages)
    await engine.sync_account(target.tenant_id, target.account_id)


async def test_new_mail_streams_live_and_a_reconnect_resumes_without_loss(
    base_url: str,
    auth: Headers,
    engine: SyncEngine,
    target: SyncTarget,
    dovecot: DovecotServer,
) -> None:
    await engine.sync_account(target.tenant_id, target.account_id)
    created = {"types": "message.created"}
    async with _stream(base_url, auth, params=created) as queue:
        await _new_mail(engine, target, dovecot, 0, 3)
        first = await _take(queue, 3)
    assert [e["event"] for e in first] == ["message.created"] * 3
    assert [e["data"]["subject"] for e in first] == [f"Message number {n}" for n in range(3)]
    seqs = [e["seq"] for e in first]
    assert seqs == sorted(seqs)

    # Two of them read; the client went away; mail went on arriving.
    await _new_mail(engine, target, dovecot, 3, 2)
    async with _stream(
        base_url, auth, params=created, **{"Last-Event-ID": first[1]["id"]}
    ) as queue:
        resumed = await _take(queue, 3)
        await _new_mail(engine, target, dovecot, 5, 1)
        resumed += await _take(queue, 1)
    assert [e["data"]["subject"] for e in resumed] == [f"Message number {n}" for n in (2, 3, 4, 5)]
    assert queue.empty()


async def test_a_stream_carries_only_its_tenants_events(
    app: FastAPI,
    base_url: str,
    auth: Headers,
    make_token: TokenFactory,
    tenant_id: str,
    target: SyncTarget,
) -> None:
    other_auth = {"Authorization": f"Bearer {make_token(tenant_id + '-x')}"}
    state: Runtime = app.state.mailsvc
    async with _stream(base_url, auth) as mine, _stream(base_url, other_auth) as theirs:
        async with state.sessionmaker.begin() as session:
            await ChangeRepository(session, tenant_id).append(
                target.account_id,
                "sync.completed",
                {"account_id": str(target.account_id), "new_messages": 0, "updated": 0,
                 "deleted": 0},
            )  # fmt: skip
        (event,) = await _take(mine, 1)
        assert event["account_id"] == str(target.account_id)
        await asyncio.sleep(0.5)  # time for a wrongly routed event to show up
        assert theirs.empty()


async def test_an_idle_stream_yields_keepalives(app: FastAPI, tenant_id: str) -> None:
    state: Runtime = app.state.mailsvc
    reader = EventReader(state.read_sessionmaker, state.changes, tenant_id, Selection())
    position = await reader.start(None)
    following = reader.follow(position, keepalive_seconds=0.05)
    assert [await anext(following), await anext(following)] == [None, None]
    await following.aclose()


async def test_a_client_that_stops_reading_is_dropped() -> None:
    closed = asyncio.Event()

    async def endless() -> AsyncIterator[bytes]:
        try:
            while True:
                yield b"data: {}\n\n"
        finally:
            closed.set()

    sent: list[dict[str, Any]] = []

    async def send(message: Any) -> None:
        sent.append(message)
        if len(sent) > 3:
            await asyncio.Event().wait()  # the client's window is full: never drains

    response = EventStreamResponse(endless(), send_timeout=0.2)
    await asyncio.wait_for(response.stream_response(send), 5)
    assert closed.is_set()
    assert sent[0]["type"] == "http.response.start"
    assert len(sent) == 4


@pytest.fixture
async def draining_app(settings: Settings) -> AsyncIterator[FastAPI]:
    """An app of its own (IDLE off), to drain without ending the run's app's streams."""
    application = create_app(settings.model_copy(update={"idle_enabled": False}))
    async with application.router.lifespan_context(application):
        yield application


async def _change(state: Runtime, tenant_id: str, target: SyncTarget) -> None:
    async with state.sessionmaker.begin() as session:
        await ChangeRepository(session, tenant_id).append(
            target.account_id,
            "sync.completed",
            {"account_id": str(target.account_id), "new_messages": 0, "updated": 0, "deleted": 0},
        )


async def test_draining_ends_a_stream_with_where_to_resume_and_nothing_is_lost(
    app: FastAPI,
    draining_app: FastAPI,
    base_url: str,
    auth: Headers,
    tenant_id: str,
    target: SyncTarget,
) -> None:
    state: Runtime = app.state.mailsvc
    drain: Drain = draining_app.state.components[Drain]
    frames: list[dict[str, str]] = []
    async with _serving(draining_app) as draining_url:
        reading = asyncio.create_task(collect_frames(draining_url, auth, frames))
        await eventually(arrived(frames, 1), what="stream open")
        await _change(state, tenant_id, target)
        await eventually(arrived(frames, 2), what="first event streamed")
        drain.begin()
        await asyncio.wait_for(reading, 10)
        # Committed after the stream ended: its client must get it on resuming.
        await _change(state, tenant_id, target)
        # A stream opened on a draining process ends at once, with the same advice.
        late: list[dict[str, str]] = []
        await asyncio.wait_for(collect_frames(draining_url, auth, late), 10)

    opening, first, farewell = frames
    assert opening == {"retry": "2000"}
    assert first["event"] == "sync.completed"
    assert farewell["id"] == first["id"], "resume right after the last event sent"
    low, high = RECONNECT_AFTER_DRAIN_MS
    assert low <= int(farewell["retry"]) <= high
    assert farewell.keys() == {"", "id", "retry"}, "a comment, no data: no event dispatched"
    assert farewell[""] == "server shutting down, reconnect"
    [late_opening, late_farewell] = late
    assert late_opening == {"retry": "2000"}
    assert late_farewell.keys() == {"", "id", "retry"}

    resumed: list[dict[str, str]] = []
    resuming = asyncio.create_task(
        collect_frames(base_url, {**auth, "Last-Event-ID": farewell["id"]}, resumed)
    )
    try:
        await eventually(arrived(resumed, 2), what="resumed stream's first event")
    finally:
        resuming.cancel()
        await asyncio.gather(resuming, return_exceptions=True)
    assert resumed[1]["id"] == late_farewell["id"], "the event committed in between"
