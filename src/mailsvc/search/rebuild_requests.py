"""How a backend asks for a tenant's rebuild job when a search finds its index unable
to answer: at most once per tenant every `REBUILD_REQUEST_INTERVAL_SECONDS` in a
process. Every search of such a tenant answers 503 until the job is done; without
the limit each one would enqueue again (a Redis round trip) for a job that runs once
per tenant anyway."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

import structlog

log = structlog.get_logger("mailsvc.search")

REBUILD_REQUEST_INTERVAL_SECONDS = 30.0


class RebuildRequests:
    """The throttled `request_rebuild(tenant_id)` of one backend."""

    def __init__(
        self,
        request_rebuild: Callable[[str], Awaitable[None]],
        *,
        interval_seconds: float = REBUILD_REQUEST_INTERVAL_SECONDS,
    ) -> None:
        self._request_rebuild = request_rebuild
        self._interval = interval_seconds
        self._asked_at: dict[str, float] = {}

    async def ask(self, tenant_id: str, *, reason: str, missing: bool) -> None:
        """Ask for the tenant's rebuild unless this process did within the interval;
        a `missing` index (lost, corrupt, outdated) is logged, a building one is not.

        A failed request is forgotten, so the next search asks again; the search
        itself still answers 503, never the queue's error.
        """
        now = time.monotonic()
        last = self._asked_at.get(tenant_id)
        if last is not None and now - last < self._interval:
            return
        self._asked_at[tenant_id] = now
        if missing:
            log.warning("search.index_missing", tenant_id=tenant_id, reason=reason)
        try:
            await self._request_rebuild(tenant_id)
        except Exception:
            del self._asked_at[tenant_id]
            log.exception("search.rebuild_request_failed", tenant_id=tenant_id)
