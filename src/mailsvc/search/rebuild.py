"""The arq job that rebuilds a tenant's search index, and how to ask for it.

A backend that finds a tenant's index missing or unsound (deleted, corrupt, of an
older schema, another tenant's) answers 503 `search_rebuilding` and calls
`request_rebuild`; one job per tenant is queued at a time (`_job_id`, and no result
kept, so the next request after it ends is queued again). The job drains the
tenant in the worker (`SearchIndexer.drain`), which rebuilds a `MISSING` index
first and marks a `BUILDING` one ready when its queue is empty: a job that arrives
after the worker's indexer has rebuilt the index already finds nothing to do.
"""

from __future__ import annotations

from typing import TypedDict

import structlog
from arq.connections import ArqRedis
from arq.worker import Function, func

from mailsvc.kit.jobs import arq_job
from mailsvc.search.indexer import SearchIndexer

log = structlog.get_logger("mailsvc.search")

REBUILD_JOB = "rebuild_search_index"


class SearchJobContext(TypedDict):
    """What the search jobs read from the worker's context."""

    search_indexer: SearchIndexer


def rebuild_job_id(tenant_id: str) -> str:
    return f"search-rebuild:{tenant_id}"


async def request_rebuild(arq: ArqRedis, tenant_id: str) -> None:
    """Queue the tenant's rebuild job unless one is queued or running already."""
    job = await arq.enqueue_job(REBUILD_JOB, tenant_id, _job_id=rebuild_job_id(tenant_id))
    if job is not None:
        log.info("search.rebuild_requested", tenant_id=tenant_id)


async def rebuild_search_index(ctx: SearchJobContext, tenant_id: str) -> int:
    """arq: bring the tenant's index back (see the module docstring); the queue rows
    indexed by this job."""
    return await ctx["search_indexer"].drain(tenant_id)


def rebuild_job_function() -> Function:
    """The arq registration of `rebuild_search_index`.

    `keep_result=0`: arq refuses a job id whose result is still stored, which would
    refuse the next rebuild of the tenant for as long as the result lives.
    """
    return func(
        arq_job(rebuild_search_index),
        name=REBUILD_JOB,
        keep_result=0,
        max_tries=1,
        timeout=6 * 3600,
    )
