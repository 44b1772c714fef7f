"""The process's pauses reach `/metrics`: full collections and a blocked event loop."""

from __future__ import annotations

import asyncio
import gc
import time

import httpx

from tests.fixtures.waiting import eventually
from tests.ops.test_metrics import grew, scrape


async def test_a_full_collection_is_counted_and_timed(client: httpx.AsyncClient) -> None:
    before = await scrape(client)
    gc.collect()
    after = await scrape(client)
    assert grew(before, after, "mailsvc_gc_pause_seconds_count", generation="2") >= 1
    assert grew(before, after, "mailsvc_gc_pause_seconds_sum", generation="2") > 0


async def test_a_blocked_event_loop_shows_as_lag(client: httpx.AsyncClient) -> None:
    before = await scrape(client)
    time.sleep(0.3)  # noqa: ASYNC251 - the stall under test
    await asyncio.sleep(0)

    async def seen() -> bool:
        after = await scrape(client)
        # The sampler's timer due during the 0.3 s stall ran well over 25 ms late.
        late = grew(before, after, "mailsvc_event_loop_lag_seconds_count") - grew(
            before, after, "mailsvc_event_loop_lag_seconds_bucket", le="0.025"
        )
        return late >= 1

    await eventually(seen, within=5, what="a late loop sample")
