"""Redis client construction (redis-py's `from_url` is untyped)."""

from __future__ import annotations

from typing import cast

import redis.asyncio as aioredis


def create_redis(url: str) -> aioredis.Redis:
    """A pooled asyncio Redis client for `url`."""
    return cast(aioredis.Redis, aioredis.from_url(url))  # type: ignore[no-untyped-call]
