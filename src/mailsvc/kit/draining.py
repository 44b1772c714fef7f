"""Draining: this process has begun its graceful shutdown.

`mailsvc serve` (ops/serve.py) calls `drain_process()` the moment a server process
stops accepting connections. Every `Drain` opened with `draining()` is then set, and
what holds one lets go of long-lived work at once while the requests in flight carry
on: Server-Sent Events streams end with their resume point (event/endpoints.py), and
the IDLE supervisor hands its accounts to the other processes (app.py). Without it a
stream would hold the shutdown for the whole grace period and then be cut off.

A process not run by `mailsvc serve` (an app in a test, `uvicorn mailsvc.app:app`)
never drains; its streams end when the server cancels them.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, AsyncIterator, Iterator
from typing import TypeVar

from mailsvc.kit.tasks import cancel_and_wait

T = TypeVar("T")

_open: set[Drain] = set()


class Drain:
    """Set once the process drains; never cleared (a draining process only exits)."""

    def __init__(self) -> None:
        self._begun = asyncio.Event()

    @property
    def begun(self) -> bool:
        return self._begun.is_set()

    def begin(self) -> None:
        self._begun.set()

    async def wait(self) -> None:
        """Return once draining has begun."""
        await self._begun.wait()

    async def until(self, items: AsyncIterator[T]) -> AsyncGenerator[T, None]:
        """`items` until draining begins; the item being awaited then is abandoned
        (its await is cancelled), so a consumer waiting for news ends at once."""
        stop = asyncio.create_task(self._begun.wait())
        step: asyncio.Task[T] | None = None
        try:
            while not self.begun:
                step = asyncio.create_task(_next(items))
                await asyncio.wait((step, stop), return_when=asyncio.FIRST_COMPLETED)
                if not step.done():
                    return
                try:
                    item = step.result()
                except StopAsyncIteration:
                    return
                yield item
        finally:
            await cancel_and_wait([task for task in (step, stop) if task is not None])


async def _next(items: AsyncIterator[T]) -> T:
    return await anext(items)


@contextlib.contextmanager
def draining() -> Iterator[Drain]:
    """A `Drain` that `drain_process()` sets while the block runs."""
    drain = Drain()
    _open.add(drain)
    try:
        yield drain
    finally:
        _open.discard(drain)


def drain_process() -> None:
    """Tell everything this process holds open that shutdown has begun."""
    for drain in list(_open):
        drain.begin()
