"""Redis leases: which process owns an account's live IMAP connections.

A lease is a key holding its owner's id with a TTL (`SET NX PX`). The owner renews
it well before the TTL runs out; renewal and release only touch a key whose value
is still the caller's id (Lua, so the check and the write are one step), so a
process that stalled past its TTL can never extend or delete the lease another
process has taken since. When an owner dies its leases expire and any other
process may take them.

Supervisors also announce themselves in a sorted set scored by expiry time, so
each one knows how many live supervisors share the work (`heartbeat`). Times come
from the Redis server's clock, never the hosts', so clock skew between hosts does
not bend the counting.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable

import redis.asyncio as aioredis

LEASE_KEY_PREFIX = "mailsvc:lease:account:"
SUPERVISORS_KEY = "mailsvc:supervisors"

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

# KEYS[1]: the supervisors set; ARGV[1]: owner id, ARGV[2]: TTL in ms.
# Scores are expiry times on the server's clock; expired members are pruned here,
# so a process that died without leaving stops counting after one TTL.
_HEARTBEAT = """
redis.replicate_commands()
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
return redis.call('ZCARD', KEYS[1])
"""


def account_lease_key(account_id: uuid.UUID) -> str:
    """The lease key of an account's IDLE connections."""
    return f"{LEASE_KEY_PREFIX}{account_id}"


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class LeaseManager:
    """Leases held by one owner (a process's supervisor) on a shared Redis."""

    def __init__(self, redis: aioredis.Redis, *, owner_id: str, ttl_seconds: float) -> None:
        if ttl_seconds <= 0:
            raise ValueError("ttl_seconds must be positive")
        self._redis = redis
        self.owner_id = owner_id
        self.ttl_seconds = ttl_seconds
        self._ttl_ms = max(1, int(ttl_seconds * 1000))
        self._renew = redis.register_script(_RENEW)
        self._delete_if_value = redis.register_script(_DELETE_IF_VALUE)
        self._heartbeat = redis.register_script(_HEARTBEAT)

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

    async def heartbeat(self) -> int:
        """Announce this owner as live for one TTL; returns how many owners are live."""
        live = await self._heartbeat(keys=[SUPERVISORS_KEY], args=[self.owner_id, self._ttl_ms])
        return max(1, int(live))

    async def leave(self) -> None:
        """Stop counting as live at once (a clean shutdown), instead of after one TTL."""
        await self._redis.zrem(SUPERVISORS_KEY, self.owner_id)
