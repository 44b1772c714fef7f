"""Redis client construction (redis-py's `from_url` is untyped)."""

from __future__ import annotations

from typing import cast

import redis.asyncio as aioredis


def create_redis(url: str, *, single_connection: bool = False) -> aioredis.Redis:
    """A pooled asyncio Redis client for `url`; with `single_connection`, a client that
    keeps one connection and sends its commands one after the other on it.

    The pool checks a connection before each command (a non-blocking read to see that
    nothing stale is waiting) and hands it back after: for a one-command caller on the
    request path (the rate limiter) that was a third of the command's CPU.
    """
    client = aioredis.from_url(  # type: ignore[no-untyped-call]
        url, single_connection_client=single_connection
    )
    return cast(aioredis.Redis, client)
