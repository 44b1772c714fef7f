"""Wake-ups when changes commit: PostgreSQL LISTEN on one connection per process.

`ChangeRepository.append_many` sends `NOTIFY mailsvc_changes, '<tenant>'` inside the
writing transaction, so a notification arrives only after the commit, from whichever
process wrote (api, worker, another host). The notification carries no data: a
subscriber reads the feed from its own position, so a lost or merged notification
costs latency, never an event. While the connection is down every subscriber is
woken every `poll_seconds`, so readers fall back to polling instead of stalling.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import defaultdict
from collections.abc import AsyncIterator, Callable
from typing import Any

import asyncpg
import structlog

from mailsvc.event.repository import CHANGES_CHANNEL
from mailsvc.kit.tasks import cancel_and_wait

log = structlog.get_logger("mailsvc.events")

ALL_TENANTS = "*"


class Wakeup:
    """A subscriber's flag: set when its tenant (or any, for `ALL_TENANTS`) has news."""

    def __init__(self) -> None:
        self._event = asyncio.Event()
        self.tenants: set[str] = set()
        # Set when news may have been missed (the LISTEN connection was down).
        self.missed = False

    def news(self, tenant_id: str) -> None:
        self.tenants.add(tenant_id)
        self._event.set()

    def poke(self) -> None:
        """Wake without naming a tenant: news may have been missed, read everything."""
        self.missed = True
        self._event.set()

    async def wait(self, seconds: float) -> set[str]:
        """Tenants with news since the last call (empty after `seconds` without any).

        `missed` tells an `ALL_TENANTS` subscriber to look at every tenant.
        """
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._event.wait()
        self._event.clear()
        tenants, self.tenants = self.tenants, set()
        return tenants


class ChangeListener:
    """One LISTEN connection, fanned out to any number of in-process subscribers.

    `channel` is `mailsvc_changes` (committed changes) unless told otherwise; the
    search indexer listens on the search queue's channel the same way.
    """

    def __init__(
        self, dsn: str, *, channel: str = CHANGES_CHANNEL, poll_seconds: float = 1.0
    ) -> None:
        self._dsn = dsn
        self._channel = channel
        self._poll_seconds = poll_seconds
        self._subscribers: dict[str, set[Wakeup]] = defaultdict(set)
        self._task: asyncio.Task[None] | None = None
        self.connected = asyncio.Event()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"listener:{self._channel}")

    async def stop(self) -> None:
        if self._task is not None:
            await cancel_and_wait([self._task])

    @contextlib.asynccontextmanager
    async def subscribe(self, tenant_id: str) -> AsyncIterator[Wakeup]:
        """Wake-ups for `tenant_id` (or `ALL_TENANTS`) while the block runs."""
        wakeup = Wakeup()
        self._subscribers[tenant_id].add(wakeup)
        try:
            yield wakeup
        finally:
            self._subscribers[tenant_id].discard(wakeup)
            if not self._subscribers[tenant_id]:
                del self._subscribers[tenant_id]

    def _notify(self, tenant_id: str) -> None:
        for key in (tenant_id, ALL_TENANTS):
            for wakeup in self._subscribers.get(key, ()):
                wakeup.news(tenant_id)

    def _wake_everyone(self) -> None:
        for key, wakeups in self._subscribers.items():
            for wakeup in wakeups:
                if key == ALL_TENANTS:
                    wakeup.poke()
                else:
                    wakeup.news(key)

    async def _run(self) -> None:
        delay = 0.5
        while True:
            connection: asyncpg.Connection | None = None
            try:
                connection = await asyncpg.connect(self._dsn)
                lost = asyncio.Event()
                connection.add_termination_listener(_setter(lost))
                await connection.add_listener(self._channel, self._on_notification)
                self.connected.set()
                delay = 0.5
                # Whatever committed while we were not listening is found by a read.
                self._wake_everyone()
                await lost.wait()
            except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
                log.warning("events.listen_failed", error=str(exc))
            finally:
                self.connected.clear()
                if connection is not None and not connection.is_closed():
                    await connection.close(timeout=2)
            # Readers poll while the connection is down.
            for _ in range(max(1, int(delay / self._poll_seconds))):
                self._wake_everyone()
                await asyncio.sleep(min(delay, self._poll_seconds))
            delay = min(delay * 2, 10.0)

    def _on_notification(self, _connection: Any, _pid: int, _channel: str, payload: object) -> None:
        self._notify(str(payload))


def _setter(event: asyncio.Event) -> Callable[[Any], None]:
    return lambda _connection: event.set()


def listen_dsn(async_database_url: str) -> str:
    """The asyncpg DSN of a `postgresql+asyncpg://` SQLAlchemy URL."""
    return async_database_url.replace("postgresql+asyncpg://", "postgresql://", 1)
