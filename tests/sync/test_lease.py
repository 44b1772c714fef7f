"""Leases and supervisor heartbeats on the run's real Redis."""

import asyncio
import secrets
import time
import uuid

import pytest
import redis.asyncio as aioredis

from mailsvc.sync.lease import SUPERVISORS_KEY, LeaseManager, account_lease_key
from tests.fixtures.waiting import eventually


@pytest.fixture
def key() -> str:
    """A lease key no other test uses."""
    return account_lease_key(uuid.uuid4())


def _manager(redis: aioredis.Redis, *, ttl_seconds: float = 10.0) -> LeaseManager:
    return LeaseManager(redis, owner_id=f"owner-{secrets.token_hex(4)}", ttl_seconds=ttl_seconds)


def test_lease_keys_name_the_account() -> None:
    account_id = uuid.UUID("01890000-0000-7000-8000-000000000001")
    assert account_lease_key(account_id) == f"mailsvc:lease:account:{account_id}"


async def test_only_one_owner_can_acquire(redis: aioredis.Redis, key: str) -> None:
    first, second = _manager(redis), _manager(redis)
    assert await first.acquire(key)
    assert not await second.acquire(key)
    assert not await first.acquire(key), "acquire is not re-entrant"
    assert await first.owner(key) == first.owner_id
    assert await second.owner(key) == first.owner_id


async def test_owners_reads_many_keys_at_once(redis: aioredis.Redis, key: str) -> None:
    first = _manager(redis)
    free = account_lease_key(uuid.uuid4())
    await first.acquire(key)
    assert await first.owners([key, free]) == {key: first.owner_id, free: None}
    assert await first.owners([]) == {}


async def test_renew_extends_only_the_callers_leases(redis: aioredis.Redis, key: str) -> None:
    first, second = _manager(redis, ttl_seconds=10), _manager(redis, ttl_seconds=10)
    other = account_lease_key(uuid.uuid4())
    assert await first.acquire(key)
    assert await second.acquire(other)
    # Shorten both so that an extension is visible.
    await redis.pexpire(key, 1000)
    await redis.pexpire(other, 1000)

    assert await first.renew([key, other]) == {key}

    assert await redis.pttl(key) > 5000
    assert await redis.pttl(other) <= 1000, "another owner's lease must not be extended"
    assert await first.renew([]) == set()


async def test_release_deletes_only_the_callers_lease(redis: aioredis.Redis, key: str) -> None:
    first, second = _manager(redis), _manager(redis)
    assert await first.acquire(key)

    assert not await second.release(key)
    assert await first.owner(key) == first.owner_id

    assert await first.release(key)
    assert await first.owner(key) is None
    assert not await first.release(key)
    assert await second.acquire(key)


async def test_an_expired_lease_passes_to_another_owner(redis: aioredis.Redis, key: str) -> None:
    ttl = 0.3
    first, second = _manager(redis, ttl_seconds=ttl), _manager(redis, ttl_seconds=ttl)
    assert await first.acquire(key)
    assert not await second.acquire(key)

    waited = await eventually(lambda: second.acquire(key), within=5.0, interval=0.02)

    assert waited < ttl + 1.0
    assert await second.owner(key) == second.owner_id
    # The first owner, back from a stall, learns it lost the lease and cannot undo that.
    assert await first.renew([key]) == set()
    assert not await first.release(key)
    assert await second.owner(key) == second.owner_id


async def test_renewal_keeps_a_lease_past_its_ttl(redis: aioredis.Redis, key: str) -> None:
    ttl = 0.3
    holder, contender = _manager(redis, ttl_seconds=ttl), _manager(redis, ttl_seconds=ttl)
    assert await holder.acquire(key)
    deadline = time.monotonic() + ttl * 4
    while time.monotonic() < deadline:
        assert await holder.renew([key]) == {key}
        assert not await contender.acquire(key)
        await asyncio.sleep(ttl / 3)


async def test_heartbeats_count_live_supervisors(redis: aioredis.Redis) -> None:
    steady, leaving = _manager(redis, ttl_seconds=10), _manager(redis, ttl_seconds=10)
    short_lived = _manager(redis, ttl_seconds=0.2)

    await steady.heartbeat()
    await short_lived.heartbeat()
    assert await leaving.heartbeat() >= 3
    for manager in (steady, leaving, short_lived):
        assert await redis.zscore(SUPERVISORS_KEY, manager.owner_id) is not None

    await leaving.leave()
    assert await redis.zscore(SUPERVISORS_KEY, leaving.owner_id) is None

    async def short_lived_pruned() -> bool:
        await steady.heartbeat()
        return await redis.zscore(SUPERVISORS_KEY, short_lived.owner_id) is None

    # A supervisor that stops beating stops counting after one TTL.
    await eventually(short_lived_pruned, within=5.0, interval=0.02)
    assert await redis.zscore(SUPERVISORS_KEY, steady.owner_id) is not None
    await steady.leave()
