"""Riding out a short PostgreSQL outage where giving up would repeat work outside.

An SMTP server has accepted a message, a webhook receiver has answered 2xx: the
outcome must reach PostgreSQL, or the lease runs out and the work is done again (a
second send, a second delivery). When the database is restarting at that moment,
`retry_while_database_unreachable` runs the recording transaction again until it
goes through or the caller's lease ends; any other error propagates at once.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import structlog

from mailsvc.errors import outage_detail, unreachable_dependency

log = structlog.get_logger("mailsvc.outage")

T = TypeVar("T")

_FIRST_PAUSE_SECONDS = 0.2
_MAX_PAUSE_SECONDS = 2.0


async def retry_while_database_unreachable(
    transaction: Callable[[], Awaitable[T]], *, until: float, what: str
) -> T:
    """`await transaction()`, again after a pause each time it fails because PostgreSQL
    cannot be reached, until `time.monotonic()` passes `until`; then the last error
    propagates. `transaction` must be a whole transaction (it is run from the start)."""
    pause = _FIRST_PAUSE_SECONDS
    while True:
        try:
            return await transaction()
        except Exception as exc:
            if unreachable_dependency(exc) != "PostgreSQL" or time.monotonic() + pause > until:
                raise
            log.warning("db.unreachable_retrying", what=what, error=outage_detail(exc))
        await asyncio.sleep(pause)
        pause = min(pause * 2, _MAX_PAUSE_SECONDS)
