"""Retention of the change log: an arq cron job deletes what is older than the window."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TypedDict

import structlog
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from mailsvc.config import Settings
from mailsvc.event.repository import trim_changes
from mailsvc.ops.metrics import count_changes_trimmed

log = structlog.get_logger("mailsvc.events")

# Small transactions, so trimming never holds back the feed's horizon for long.
_BATCH = 5_000


class RetentionJobContext(TypedDict):
    """What the trim job reads from the worker's context."""

    settings: Settings
    sessionmaker: async_sessionmaker[AsyncSession]


async def trim_change_log(ctx: RetentionJobContext) -> int:
    """arq cron: delete changes older than CHANGE_RETENTION_DAYS; how many went."""
    cutoff = datetime.now(UTC) - timedelta(days=ctx["settings"].change_retention_days)
    total = 0
    while True:
        async with ctx["sessionmaker"].begin() as session:
            deleted = await trim_changes(session, older_than=cutoff, batch=_BATCH)
        total += deleted
        # Per committed batch, so a run that fails half-way still counts what went.
        count_changes_trimmed(deleted)
        if deleted < _BATCH:
            break
    if total:
        log.info("events.trimmed", changes=total, before=cutoff.isoformat())
    return total
