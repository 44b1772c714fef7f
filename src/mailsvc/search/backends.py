"""Choosing the search backend a process uses (`SEARCH_BACKEND`)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from mailsvc.config import Settings
from mailsvc.search.backend import SearchBackend
from mailsvc.search.postgres import PostgresBackend
from mailsvc.search.tantivy import TantivyBackend


def open_search_backend(
    settings: Settings,
    *,
    sessionmaker: async_sessionmaker[AsyncSession],
    request_rebuild: Callable[[str], Awaitable[None]],
) -> SearchBackend:
    """The backend `settings.search_backend` names; the caller closes it (`aclose`).

    `request_rebuild(tenant_id)` queues a tenant's rebuild in a worker; a backend
    calls it when a search finds the tenant's index missing, unsound, of an older
    schema, or left building by a crash.
    """
    if settings.search_backend == "postgres":
        return PostgresBackend(sessionmaker, request_rebuild=request_rebuild)
    return TantivyBackend(settings.search_index_path, request_rebuild=request_rebuild)
