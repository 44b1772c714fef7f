"""`Drain.until`: a stream of items that ends the moment the process drains.

`drain_process()` itself is exercised by tests/test_serve_workers.py in real server
processes: here it would also drain the run's shared app.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from mailsvc.kit.draining import Drain


async def _items(closed: asyncio.Event, *, count: int | None = None) -> AsyncIterator[int]:
    """0, 1, 2, ... (`count` of them, or forever), each when it is asked for; after the
    last one it waits for news that never comes, as an idle event feed does."""
    try:
        number = 0
        while count is None or number < count:
            yield number
            number += 1
        await asyncio.Event().wait()
    finally:
        closed.set()


async def test_items_flow_until_draining_begins_and_a_pending_wait_is_abandoned() -> None:
    drain = Drain()
    closed = asyncio.Event()
    received: list[int] = []
    all_three = asyncio.Event()
    async with contextlib.aclosing(drain.until(_items(closed, count=3))) as items:

        async def consume() -> None:
            async for item in items:
                received.append(item)
                if len(received) == 3:
                    all_three.set()

        consuming = asyncio.create_task(consume())
        await asyncio.wait_for(all_three.wait(), 10)
        await asyncio.sleep(0)
        assert not consuming.done()  # waiting for a fourth item that never comes
        drain.begin()
        await asyncio.wait_for(consuming, 10)
    assert received == [0, 1, 2]
    assert closed.is_set(), "the source's wait was cancelled and it ran its cleanup"


async def test_a_stream_opened_after_draining_began_ends_at_once() -> None:
    drain = Drain()
    drain.begin()
    closed = asyncio.Event()
    source = _items(closed)
    async with contextlib.aclosing(drain.until(source)) as items:
        assert [item async for item in items] == []
    await source.aclose()
    assert drain.begun


async def test_a_source_that_ends_ends_the_stream() -> None:
    drain = Drain()
    closed = asyncio.Event()

    async def three() -> AsyncIterator[int]:
        for number in range(3):
            yield number
        closed.set()

    async with contextlib.aclosing(drain.until(three())) as items:
        assert [item async for item in items] == [0, 1, 2]
    assert closed.is_set()
    assert not drain.begun


async def test_a_consumer_that_stops_reading_stops_the_source() -> None:
    drain = Drain()
    closed = asyncio.Event()
    items = drain.until(_items(closed))
    assert await anext(items) == 0
    # The stream's consumer leaves (a client disconnected) while it waits for news.
    pending = asyncio.create_task(anext(items))
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    pending.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await pending
    await items.aclose()
    await asyncio.wait_for(closed.wait(), 10)
