"""Redis leases: which process may do a piece of work that must have one doer at a time.

A lease is a key holding its owner's id with a TTL (`SET NX PX`). The owner renews
it well before the TTL runs out; renewal and release only touch a key whose value
is still the caller's id (Lua, so the check and the write are one step), so a
process that stalled past its TTL can never extend or delete the lease another
process has taken since. When an owner dies its leases expire and any other
process may take them.

A lease says who should be working, not that nobody else is: an owner that stalls
past its TTL may wake up and carry on for a moment after another took over. Work
whose result a second doer could spoil keeps its own fence (a row lock, an advisory
lock in the writing transaction); the lease keeps the others from even trying.

`Leases` is one owner's handle on any number of keys (the IDLE supervisor's
accounts, `sync/lease.py`); `hold` keeps one key renewed while a block of work runs
(the search indexer's tenants).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterable

import redis.asyncio as aioredis
import structlog

from mailsvc.kit.tasks import cancel_and_wait

log = structlog.get_logger("mailsvc.lease")

# KEYS: the leases; ARGV[1]: owner id, ARGV[2]: TTL in ms. Returns the keys kept.
_RENEW = """
local kept = {}
for _, key in ipairs(KEYS) do
  if redis.call('GET', key) == ARGV[1] then
    redis.call('PEXPIRE', key, ARGV[2])
    table.insert(kept, key)
  end
end
return kept
"""

# KEYS[1]: a key; ARGV[1]: the value it must still hold to be deleted.
_DELETE_IF_VALUE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class Leases:
    """Leases held by one owner (a process, or one task of it) on a shared Redis."""

    def __init__(self, redis: aioredis.Redis, *, owner_id: str, ttl_seconds: float) -> None:
        if ttl_seconds <= 0:
            raise ValueError("ttl_seconds must be positive")
        self._redis = redis
        self.owner_id = owner_id
        self.ttl_seconds = ttl_seconds
        self._ttl_ms = max(1, int(ttl_seconds * 1000))
        self._renew = redis.register_script(_RENEW)
        self._delete_if_value = redis.register_script(_DELETE_IF_VALUE)

    async def acquire(self, key: str) -> bool:
        """Take `key` if nobody holds it; True when it is ours now."""
        taken = await self._redis.set(key, self.owner_id, nx=True, px=self._ttl_ms)
        return bool(taken)

    async def renew(self, keys: Iterable[str]) -> set[str]:
        """Extend the given leases that are still ours; returns those (the rest are lost)."""
        wanted = list(keys)
        if not wanted:
            return set()
        kept = await self._renew(keys=wanted, args=[self.owner_id, self._ttl_ms])
        return {_text(key) for key in kept}

    async def release(self, key: str) -> bool:
        """Give `key` up if it is still ours; True when it was deleted."""
        return bool(await self.delete_if_value(key, self.owner_id))

    async def delete_if_value(self, key: str, value: str) -> bool:
        """Delete `key` only while it holds exactly `value` (compare-and-delete)."""
        return bool(await self._delete_if_value(keys=[key], args=[value]))

    async def owner(self, key: str) -> str | None:
        """Who holds `key` now, if anyone."""
        value = await self._redis.get(key)
        return None if value is None else _text(value)

    async def owners(self, keys: Iterable[str]) -> dict[str, str | None]:
        """`owner` for many keys in one round trip."""
        wanted = list(keys)
        if not wanted:
            return {}
        values = await self._redis.mget(wanted)
        return {key: None if v is None else _text(v) for key, v in zip(wanted, values, strict=True)}


class HeldLease:
    """A lease kept renewed by `hold`; `lost` is set once it is no longer ours."""

    def __init__(self, key: str) -> None:
        self.key = key
        self.lost = asyncio.Event()


@contextlib.asynccontextmanager
async def hold(leases: Leases, key: str) -> AsyncIterator[HeldLease | None]:
    """Take `key` for the block and renew it every third of the TTL; None when
    another owner holds it (the block then runs without it, and should do nothing).

    When a renewal finds the lease gone (this process stalled past the TTL and
    another took it) or Redis cannot be reached for a whole TTL, `lost` is set: the
    block should stop at its next safe point. The lease is released on exit.
    """
    if not await leases.acquire(key):
        yield None
        return
    held = HeldLease(key)
    renewer = asyncio.create_task(_keep_renewed(leases, held), name=f"lease-renewal:{key}")
    try:
        yield held
    finally:
        await cancel_and_wait([renewer])
        if not held.lost.is_set():
            # Best effort: a release that fails leaves the key to expire after one TTL.
            try:
                await leases.release(key)
            except (aioredis.RedisError, OSError) as exc:
                log.warning("lease.release_failed", key=key, error=str(exc))


async def _keep_renewed(leases: Leases, held: HeldLease) -> None:
    interval = leases.ttl_seconds / 3
    loop = asyncio.get_running_loop()
    renewed_at = loop.time()
    while True:
        await asyncio.sleep(interval)
        try:
            kept = await leases.renew([held.key])
        except (aioredis.RedisError, OSError) as exc:
            log.warning("lease.renew_failed", key=held.key, error=str(exc))
            if loop.time() - renewed_at >= leases.ttl_seconds:
                held.lost.set()
                return
            continue
        if held.key not in kept:
            log.warning("lease.lost", key=held.key, owner=leases.owner_id)
            held.lost.set()
            return
        renewed_at = loop.time()
