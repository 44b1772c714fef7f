"""Pauses of the whole process: the garbage collector's and the event loop's.

Every request and every IDLE connection of a process waits while one callback holds
the event loop, and while Python's cyclic garbage collector walks the heap. A full
collection walks every container object the process holds: ~40 ms for the api's
own code and libraries here (180,000 objects), more with each IDLE connection's
objects on top, which showed as 100-200 ms stalls in the p99 of reads
(bench/api.py, docs/performance.md).

`freeze_startup_heap` moves what start-up built into the collector's permanent
generation, which collections no longer walk: modules, routes, models and the
runtime live as long as the process, so nothing is lost by never collecting them.
`watch_pauses` exports both kinds of pause (`mailsvc_gc_pause_seconds`,
`mailsvc_event_loop_lag_seconds`) so an operator sees them without a profiler.
"""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from mailsvc.ops.metrics import observe_gc_pause, observe_loop_lag

# How often the loop's lateness is sampled: a stall shorter than this may go unseen;
# sampling costs one timer per interval.
LAG_SAMPLE_SECONDS = 0.25


def freeze_startup_heap() -> None:
    """Collect once, then exempt every object alive now from later collections."""
    gc.collect()
    gc.freeze()


class _GcTimer:
    """A `gc.callbacks` entry timing each collection."""

    def __init__(self) -> None:
        self._started = 0.0

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            observe_gc_pause(info["generation"], time.perf_counter() - self._started)


async def _sample_lag() -> None:
    loop = asyncio.get_running_loop()
    while True:
        expected = loop.time() + LAG_SAMPLE_SECONDS
        await asyncio.sleep(LAG_SAMPLE_SECONDS)
        observe_loop_lag(max(0.0, loop.time() - expected))


@asynccontextmanager
async def watch_pauses() -> AsyncIterator[None]:
    """Export the process's pauses while the context is open."""
    timer = _GcTimer()
    gc.callbacks.append(timer)
    sampler = asyncio.create_task(_sample_lag(), name="loop-lag")
    try:
        yield
    finally:
        sampler.cancel()
        gc.callbacks.remove(timer)
