"""Redis leases: which process owns an account's live IMAP connections.

Each account's lease is a `kit.lease` key (`SET NX PX`, renewed and released only
while it still holds the owner's id; see there). When an owner dies its leases
expire and any other process may take them.

Supervisors also announce themselves in a sorted set scored by expiry time, so
each one knows how many live supervisors share the work (`heartbeat`). Times come
from the Redis server's clock, never the hosts', so clock skew between hosts does
not bend the counting.
"""

from __future__ import annotations

import uuid

import redis.asyncio as aioredis

from mailsvc.kit.lease import Leases

LEASE_KEY_PREFIX = "mailsvc:lease:account:"
SUPERVISORS_KEY = "mailsvc:supervisors"

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


class LeaseManager(Leases):
    """Leases held by one owner (a process's supervisor) on a shared Redis, and its
    place among the live supervisors."""

    def __init__(self, redis: aioredis.Redis, *, owner_id: str, ttl_seconds: float) -> None:
        super().__init__(redis, owner_id=owner_id, ttl_seconds=ttl_seconds)
        self._heartbeat = redis.register_script(_HEARTBEAT)

    async def heartbeat(self) -> int:
        """Announce this owner as live for one TTL; returns how many owners are live."""
        live = await self._heartbeat(keys=[SUPERVISORS_KEY], args=[self.owner_id, self._ttl_ms])
        return max(1, int(live))

    async def leave(self) -> None:
        """Stop counting as live at once (a clean shutdown), instead of after one TTL."""
        await self._redis.zrem(SUPERVISORS_KEY, self.owner_id)
