"""Fixed windows in Redis: every window counts, the tightest decides, keys are separate."""

from __future__ import annotations

import uuid

import redis.asyncio as aioredis

from mailsvc.kit.ratelimit import Window, WindowLimiter


async def test_the_tightest_window_decides_and_keys_do_not_share(redis: aioredis.Redis) -> None:
    prefix = f"test:{uuid.uuid4().hex}"
    limiter = WindowLimiter(redis, prefix=prefix, windows=[Window(60, 3), Window(3600, 5)])

    first = await limiter.hit("a")
    assert (first.allowed, first.limit, first.remaining) == (True, 3, 2)
    assert 59 <= first.reset_after <= 60
    assert [(await limiter.hit("a")).allowed for _ in range(3)] == [True, True, False]
    refused = await limiter.hit("a")
    assert (refused.allowed, refused.limit, refused.remaining) == (False, 3, 0)
    assert (await limiter.hit("b")).remaining == 2
    # Refused hits count too: the hour window has seen all five.
    assert int(await redis.get(f"{prefix}:3600:a") or 0) == 5


async def test_the_hour_window_refuses_once_the_minute_one_resets(redis: aioredis.Redis) -> None:
    prefix = f"test:{uuid.uuid4().hex}"
    limiter = WindowLimiter(redis, prefix=prefix, windows=[Window(60, 10), Window(3600, 2)])
    assert [(await limiter.hit("a")).allowed for _ in range(3)] == [True, True, False]
    refused = await limiter.hit("a")
    assert refused.limit == 2
    assert refused.reset_after > 60  # the hour window's wait, not the minute's


async def test_a_counter_that_lost_its_expiry_gets_it_back(redis: aioredis.Redis) -> None:
    prefix = f"test:{uuid.uuid4().hex}"
    await redis.set(f"{prefix}:60:a", 1)  # no TTL: it would never reset
    decision = await WindowLimiter(redis, prefix=prefix, windows=[Window(60, 5)]).hit("a")
    assert decision.remaining == 3
    assert 0 < await redis.ttl(f"{prefix}:60:a") <= 60


async def test_limits_of_zero_turn_the_limiter_off(redis: aioredis.Redis) -> None:
    limiter = WindowLimiter(redis, prefix="test:off", windows=[Window(60, 0), Window(3600, 0)])
    assert not limiter.enabled
    assert (await limiter.hit("a")).allowed
