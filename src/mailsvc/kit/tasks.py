"""Stopping asyncio tasks reliably."""

from __future__ import annotations

import asyncio
from collections.abc import Collection
from typing import Any

RECANCEL_AFTER_SECONDS = 1.0


async def cancel_and_wait(tasks: Collection[asyncio.Future[Any]]) -> None:
    """Cancel `tasks` and return once every one has ended (their errors are discarded).

    A task that is still running a second later is cancelled again: on Python 3.11,
    `asyncio.wait_for` swallows a cancellation that lands while its inner awaitable
    completes (CPython gh-86296), and libraries wrap every I/O call in it. Without
    the retry, such a task carries on and whoever waits for it waits forever.
    """
    pending = {task for task in tasks if not task.done()}
    while pending:
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=RECANCEL_AFTER_SECONDS)
    # The caller stopped these on purpose; their errors are not news. Reading them
    # keeps asyncio from logging "Task exception was never retrieved".
    for task in tasks:
        if not task.cancelled():
            task.exception()
