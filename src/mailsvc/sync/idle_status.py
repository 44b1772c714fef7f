"""Who watches an account over IDLE right now: the `mailsvc:idle:<account>` key.

A watcher writes it once its connections are watching and deletes it (its own value
only) when they close; the supervisor's lease renewals refresh its TTL; the sync
status API reads it. It lives apart from the supervisor so that the status API can
read it without importing the IMAP and lease machinery. The TTL is two lease TTLs:
the status of a process that died without cleaning up outlives its leases only
briefly.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import redis.asyncio as aioredis

IDLE_STATUS_PREFIX = "mailsvc:idle:"


def idle_status_key(account_id: uuid.UUID) -> str:
    return f"{IDLE_STATUS_PREFIX}{account_id}"


def idle_status_ttl_ms(lease_ttl_seconds: float) -> int:
    """How long a status lives unless a lease renewal refreshes it."""
    return int(lease_ttl_seconds * 2000)


def idle_status_value(*, owner_id: str, mailboxes: Sequence[str]) -> str:
    """The status a watcher writes as its connections start watching `mailboxes`."""
    return json.dumps(
        {
            "owner": owner_id,
            "mailboxes": list(mailboxes),
            "connected_at": datetime.now(UTC).isoformat(),
        }
    )


async def idle_status(redis: aioredis.Redis, account_id: uuid.UUID) -> dict[str, Any] | None:
    """`{"owner", "mailboxes", "connected_at"}` while a process watches the account."""
    raw = await redis.get(idle_status_key(account_id))
    if raw is None:
        return None
    status: dict[str, Any] = json.loads(raw)
    return status


async def idle_statuses(
    redis: aioredis.Redis, account_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, dict[str, Any]]:
    """`idle_status` of several accounts in one round trip: the watched ones only."""
    if not account_ids:
        return {}
    raws = await redis.mget([idle_status_key(account_id) for account_id in account_ids])
    return {
        account_id: json.loads(raw)
        for account_id, raw in zip(account_ids, raws, strict=True)
        if raw is not None
    }
