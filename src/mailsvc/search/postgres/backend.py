"""The PostgreSQL search backend: a narrow `message_search` table beside `messages`.

For deployments whose api processes run on several hosts that share no disk: the
index lives in the database they share. One row per message (`models.search`) holds
the plain columns a search filters on and four text-search vectors:

- `document`: the subject (weight A), every name and address of From, To, Cc, Bcc
  and Reply-To (B) and the capped text body (C), for free text and relevance;
- `subject_words`, `from_words`, `to_words` (To, Cc and Bcc): for `subject:`,
  `from:` and `to:`, each behind its own GIN index.

Words come from `search.words`, on both sides. The vectors are written in
PostgreSQL's text form of a tsvector (`'word':1A,7C`) and queries in that of a
tsquery (`'alice' <-> 'acme' & !('draft')`), with every word quoted (lexemes.py):
PostgreSQL's own parser never splits a document (it keeps `alice@acme.test` and
`east-coast` whole, and what it calls a letter depends on the database's locale),
and user text is never read as tsquery syntax. Between two fields, and between two
names or addresses, one position is left out, so a phrase never spans them
(`from:"smith alice"` does not match "Alice Smith <alice@...>").

A search compiles its whole filter onto `message_search` (repository.py) and finds
a page of ids with their sort keys; a search in received order walks the newest rows
first and asks the GIN indexes only when matches are sparse there
(`MessageSearchRepository._by_date` says why). Highlights are the caller's, as
for every backend (`search.backend`).

Reads run in a short session of their own; `write`, `reset` and `mark_ready` run in
the indexer's transaction, so documents and the search queue commit together. A
tenant without a `search_index_states` row is ready (a new tenant never waits). A
search of a tenant that is not ready asks for the rebuild job (`request_rebuild`):
one written in an older format is rebuilt, and one a crash left `building` is
drained and marked ready.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from mailsvc.search.backend import Hit, HitPage, IndexState, SearchDocument, SearchRebuilding
from mailsvc.search.filter import MessageFilter, Order, Position
from mailsvc.search.postgres.lexemes import SCHEMA_VERSION, batches, search_row
from mailsvc.search.postgres.repository import MessageSearchRepository
from mailsvc.search.rebuild_requests import RebuildRequests
from mailsvc.search.words import parse_free_text


class PostgresBackend:
    """`SearchBackend` over `message_search` (see the module docstring)."""

    name = "postgres"

    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        *,
        request_rebuild: Callable[[str], Awaitable[None]] | None = None,
    ) -> None:
        """`request_rebuild(tenant_id)` is awaited when a search finds the tenant's
        index not ready (throttled: `search.rebuild_requests`)."""
        self._sessionmaker = sessionmaker
        self._rebuilds = None if request_rebuild is None else RebuildRequests(request_rebuild)

    async def search(
        self,
        tenant_id: str,
        filters: MessageFilter,
        *,
        order: Order,
        after: Position | None,
        limit: int,
    ) -> HitPage:
        """Up to `limit` hits after `after` in `order` (see `SearchBackend.search`)."""
        free = parse_free_text(filters.text) if filters.text else None
        async with self._sessionmaker() as session:
            repository = MessageSearchRepository(session, tenant_id)
            state = _state_of(await repository.state_row())
            if state is not IndexState.READY:
                if self._rebuilds is not None:
                    await self._rebuilds.ask(
                        tenant_id, reason=state.value, missing=state is IndexState.MISSING
                    )
                raise SearchRebuilding(tenant_id, f"the index is {state.value}")
            # One more than asked: whether more follow.
            rows = await repository.page(filters, free, order=order, after=after, limit=limit + 1)
        return HitPage(
            hits=[Hit(message_id, key) for message_id, key in rows[:limit]],
            more=len(rows) > limit,
        )

    async def state(self, tenant_id: str) -> IndexState:
        """READY, BUILDING while a rebuild runs, MISSING when written in an older format."""
        async with self._sessionmaker() as session:
            return _state_of(await MessageSearchRepository(session, tenant_id).state_row())

    async def reset(self, session: AsyncSession, tenant_id: str) -> None:
        """Delete the tenant's documents and mark its index BUILDING."""
        repository = MessageSearchRepository(session, tenant_id)
        await repository.clear()
        await repository.set_state("building")

    async def write(
        self,
        session: AsyncSession,
        tenant_id: str,
        *,
        documents: Sequence[SearchDocument],
        removed: Sequence[uuid.UUID],
    ) -> None:
        """Replace `documents` by id and delete `removed`, in the caller's transaction.

        An id in both is removed (the later statement wins).
        """
        repository = MessageSearchRepository(session, tenant_id)
        # One row per id: ON CONFLICT cannot update a row twice in one statement.
        latest = {document.id: document for document in documents}
        # Splitting every body into words is CPU work (~0.5 ms a message): off the loop
        # the sync and the other tenants' batches share.
        rows = await asyncio.to_thread(_search_rows, list(latest.values()))
        for batch in batches(rows):
            await repository.upsert(batch)
        if removed:
            await repository.remove(removed)

    async def mark_ready(self, session: AsyncSession, tenant_id: str) -> None:
        """The rebuild is complete: the tenant's searches are answered again."""
        await MessageSearchRepository(session, tenant_id).set_state("ready")

    async def aclose(self) -> None:
        """Nothing to release: sessions are per call, the engine is the runtime's."""


def _state_of(row: tuple[str, int] | None) -> IndexState:
    if row is None:
        return IndexState.READY
    state, schema_version = row
    if state == "building":
        return IndexState.BUILDING
    return IndexState.READY if schema_version == SCHEMA_VERSION else IndexState.MISSING


def _search_rows(documents: Sequence[SearchDocument]) -> list[dict[str, Any]]:
    return [search_row(document) for document in documents]
