"""Running the arq worker so that it outlives a Redis outage.

arq's own loop ends at the first Redis error of its poll (the queue read, the health
record, a cron enqueue, a job's result write), and `mailsvc worker` would exit with
it: after Redis restarts, nothing would run sends, retries, webhooks or sweeps until
an operator (or the orchestrator) started the worker again. Here a poll that cannot
reach Redis is logged and tried again after a pause; the worker keeps its runtime,
and once Redis answers the crons run as before. Their sweeps re-create from
PostgreSQL the jobs a Redis restarted without persistence has lost (DEPLOYMENT.md,
"What Redis holds").

A job that ran while Redis was away keeps its effect (the outbox and delivery rows
say what happened); only arq's bookkeeping for it may be lost, which every job
tolerates: each re-checks its row before doing anything.
"""

from __future__ import annotations

import asyncio

import structlog
from arq.typing import WorkerSettingsType
from arq.worker import Worker, get_kwargs
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

log = structlog.get_logger("mailsvc.worker")

# Between two polls that found Redis away: short, so the worker is back within a
# second or so of Redis, and one warning a second at most while it is down.
REDIS_RETRY_SECONDS = 1.0


class OutageTolerantWorker(Worker):
    """arq's worker, whose poll rides out Redis being unreachable instead of exiting."""

    async def _poll_iteration(self) -> None:
        try:
            await super()._poll_iteration()
        except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
            log.warning("worker.redis_unavailable", error=str(exc)[:200])
            await asyncio.sleep(REDIS_RETRY_SECONDS)


# The override above depends on arq's internals: fail at import, not silently, if a
# new arq version renames the method.
assert callable(getattr(Worker, "_poll_iteration", None)), "arq.Worker._poll_iteration is gone"


def run_worker(settings_cls: WorkerSettingsType) -> None:
    """`arq.run_worker` with `OutageTolerantWorker`; returns when a signal stops it."""
    OutageTolerantWorker(**get_kwargs(settings_cls)).run()  # type: ignore[arg-type]
