"""The one interface every search backend implements, and what crosses it.

PostgreSQL is the source of truth; a backend's index is derived from it and can be
rebuilt from it at any time (docs/search.md). Two implementations:

- `tantivy` (`search/tantivy/`): one Tantivy index directory per tenant under
  `SEARCH_INDEX_DIR`, written by one worker at a time, read by every api process;
- `postgres` (`search/postgres/`): a narrow `message_search` table, for api
  processes on several hosts that share no disk.

Read side: `search` answers one page of hits (ids and sort keys) for a parsed query.
The caller joins the hits against `messages` (tenant-scoped, with the filter's plain
columns checked again), so a stale or foreign document can never leave the API; a
hit whose row is gone is dropped and the caller asks for the next page of hits. The
highlights are built there too, from the bodies the join reads (`search.excerpt`):
one way for every backend, and no copy of the bodies in an index.

Write side: the indexer (`search/indexer.py`) drains `search_queue` (filled by
triggers on `messages`, migration 0012) and hands each batch to `write`, holding the
tenant's writer lease. `write` receives the queue's transaction: a backend that lives
in PostgreSQL writes in it, so documents and queue move together; one that lives
elsewhere commits its own index first, so a crash between the two repeats the batch
(documents are replaced by id, never added twice).
"""

from __future__ import annotations

import enum
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from sqlalchemy.ext.asyncio import AsyncSession

from mailsvc.search.filter import MessageFilter, Order, Position

# The body part of a search document is capped: matches further in are not found.
# Tantivy and PostgreSQL index the same text, so both backends answer alike.
SEARCH_BODY_CHARS = 100_000


class IndexState(enum.StrEnum):
    """Whether a tenant's index can answer searches."""

    READY = "ready"
    """Searchable; documents may still be on their way (a first mirror)."""
    BUILDING = "building"
    """Being rebuilt from PostgreSQL: searches answer 503 `search_rebuilding`."""
    MISSING = "missing"
    """No usable index: never built, deleted, corrupt, another tenant's, or of an
    older schema. A rebuild is due."""


class SearchRebuilding(Exception):
    """The tenant's index is missing or being rebuilt (503 `search_rebuilding`)."""

    def __init__(self, tenant_id: str, reason: str) -> None:
        super().__init__(f"search index of tenant {tenant_id} is rebuilding: {reason}")
        self.tenant_id = tenant_id
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Address:
    """One name and address of a header, as stored on the message row."""

    name: str | None
    address: str


@dataclass(frozen=True, slots=True, kw_only=True)
class SearchDocument:
    """Everything a backend indexes of one message, read from its `messages` row."""

    id: uuid.UUID
    account_id: uuid.UUID
    mailbox_id: uuid.UUID
    thread_id: uuid.UUID | None
    received_at: datetime
    """The IMAP internal date: the sort key of `newest` and `oldest`."""
    seen: bool
    flagged: bool
    has_attachments: bool
    labels: tuple[str, ...] | None = None
    """Gmail's labels (`label:`, `?label=`); None on other servers."""
    subject: str
    from_: tuple[Address, ...]
    to: tuple[Address, ...]
    """To, Cc and Bcc: `to:` searches all three, as in Gmail."""
    reply_to: tuple[Address, ...]
    body: str
    """The text body, capped at `SEARCH_BODY_CHARS` characters."""


@dataclass(frozen=True, slots=True)
class Hit:
    """One matching message, in the page's order."""

    message_id: uuid.UUID
    key: datetime | float
    """The sort key: received time (`newest`, `oldest`) or relevance score."""


@dataclass(frozen=True, slots=True)
class HitPage:
    hits: list[Hit]
    more: bool
    """Whether hits follow the last one (the next page starts after it)."""


class SearchBackend(Protocol):
    """A search index of every tenant's messages (see the module docstring)."""

    name: str

    async def search(
        self,
        tenant_id: str,
        filters: MessageFilter,
        *,
        order: Order,
        after: Position | None,
        limit: int,
    ) -> HitPage:
        """Up to `limit` hits after `after`, in `order` with ties broken by id
        (descending for `newest` and `relevance`, ascending for `oldest`).

        Every field of `filters` must hold for a hit. Raises `SearchRebuilding` when
        the tenant's index cannot answer (and asks for its rebuild).
        """
        ...

    async def state(self, tenant_id: str) -> IndexState:
        """Whether the tenant's index can answer; checks that it is sound."""
        ...

    async def reset(self, session: AsyncSession, tenant_id: str) -> None:
        """Empty the tenant's index and mark it `BUILDING` (the caller then queues
        every message of the tenant). Called by the lease holder only."""
        ...

    async def write(
        self,
        session: AsyncSession,
        tenant_id: str,
        *,
        documents: Sequence[SearchDocument],
        removed: Sequence[uuid.UUID],
    ) -> None:
        """Replace the documents of `documents` (by id) and delete those of `removed`.

        Called by the lease holder only, inside the transaction that takes the batch
        off the queue (see the module docstring).
        """
        ...

    async def mark_ready(self, session: AsyncSession, tenant_id: str) -> None:
        """The tenant's rebuild is complete: searches are answered again."""
        ...

    async def aclose(self) -> None:
        """Release readers, writers and threads."""
        ...
