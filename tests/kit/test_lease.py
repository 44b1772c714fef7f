"""`kit.lease.hold` on the run's real Redis: one holder at a time, kept renewed while
the block runs, given up on exit, and `lost` when another owner took the key."""

from __future__ import annotations

import asyncio
import secrets

import pytest
import redis.asyncio as aioredis

from mailsvc.kit.lease import Leases, hold


@pytest.fixture
def key() -> str:
    return f"mailsvc:lease:test:{secrets.token_hex(6)}"


def _leases(redis: aioredis.Redis, *, ttl_seconds: float = 10.0) -> Leases:
    return Leases(redis, owner_id=f"owner-{secrets.token_hex(4)}", ttl_seconds=ttl_seconds)


async def test_one_block_holds_a_key_at_a_time_and_gives_it_up_on_exit(
    redis: aioredis.Redis, key: str
) -> None:
    first, second = _leases(redis), _leases(redis)
    async with hold(first, key) as held:
        assert held is not None
        async with hold(second, key) as refused:
            assert refused is None
        assert await first.owner(key) == first.owner_id
    assert await first.owner(key) is None
    async with hold(second, key) as held_now:
        assert held_now is not None


async def test_the_lease_outlives_its_ttl_while_the_block_runs(
    redis: aioredis.Redis, key: str
) -> None:
    # Renewed every 0.5 s: a loaded machine may stall the loop for a second and the
    # key still holds, while three TTLs without renewal would have lost it.
    leases = _leases(redis, ttl_seconds=1.5)
    async with hold(leases, key) as held:
        assert held is not None
        for _ in range(6):
            await asyncio.sleep(0.75)
            assert await leases.owner(key) == leases.owner_id
        assert not held.lost.is_set()


async def test_a_key_taken_by_another_owner_is_lost_and_left_to_it(
    redis: aioredis.Redis, key: str
) -> None:
    stalled, other = _leases(redis, ttl_seconds=0.3), _leases(redis)
    async with hold(stalled, key) as held:
        assert held is not None
        # As if this owner stalled past its TTL and another took the key.
        await redis.set(key, other.owner_id)
        await asyncio.wait_for(held.lost.wait(), 5)
    # Exiting does not release what is no longer ours.
    assert await other.owner(key) == other.owner_id
