"""Per-tenant request limits in Redis; the only importer of `limits`.

Fixed windows per minute and per hour: one INCR+EXPIRE per window per request,
shared by every api process through Redis.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import redis.asyncio as aioredis
from limits import RateLimitItem, RateLimitItemPerHour, RateLimitItemPerMinute
from limits.aio.storage import RedisStorage
from limits.aio.strategies import FixedWindowRateLimiter


@dataclass(frozen=True, slots=True)
class RateLimitDecision:
    """The outcome of one request against the tightest window."""

    allowed: bool
    limit: int
    remaining: int
    reset_after: int  # seconds until the tightest window resets


class TenantRateLimiter:
    """Counts requests per tenant against per-minute and per-hour limits (0 disables)."""

    def __init__(
        self, redis: aioredis.Redis, *, redis_url: str, per_minute: int, per_hour: int
    ) -> None:
        self._items: list[RateLimitItem] = []
        if per_minute > 0:
            self._items.append(RateLimitItemPerMinute(per_minute))
        if per_hour > 0:
            self._items.append(RateLimitItemPerHour(per_hour))
        # Share the service's connection pool, so closing the client closes ours too.
        self._storage = RedisStorage(
            redis_url,
            implementation="redispy",
            key_prefix="mailsvc:ratelimit",
            connection_pool=redis.connection_pool,  # type: ignore[arg-type]
        )
        self._limiter = FixedWindowRateLimiter(self._storage)

    @property
    def enabled(self) -> bool:
        return bool(self._items)

    async def hit(self, tenant: str) -> RateLimitDecision:
        decisions: list[RateLimitDecision] = []
        for item in self._items:
            allowed = await self._limiter.hit(item, "tenant", tenant)
            stats = await self._limiter.get_window_stats(item, "tenant", tenant)
            reset_after = max(0, math.ceil(stats.reset_time - time.time()))
            decisions.append(RateLimitDecision(allowed, item.amount, stats.remaining, reset_after))
            if not allowed:
                return decisions[-1]
        return min(decisions, key=lambda decision: decision.remaining)
