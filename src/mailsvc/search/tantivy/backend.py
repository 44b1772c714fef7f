"""The Tantivy search backend: one index per tenant on a disk the api processes share.

Every Tantivy call runs in a worker thread (`asyncio.to_thread`); the index
directories, their states and the reader cache are store.py's, the query is
compile.py's. This module pages.

Paging is exact, ties included, without trusting Tantivy's order among equal keys
(it breaks ties by document address, which is not the id):

- `newest`/`oldest` sort by the `order_key` fast field, which never decreases in
  (received_at, id) (schema.order_key). A page after `after` asks for keys from
  `after`'s key on (inclusive) and a few more hits than it needs; hits of equal key
  form a group, ordered in Python by (received_at, id). The group of the last hit may
  continue past the fetched ones, so it is left for the next round, which starts
  at its key; a fetch that is one group only reads that whole group, and the next
  round starts after it. So every round narrows the keys still to read, and a page
  ends. Groups are nearly always single messages (the key holds the microsecond and
  8 bits of id); times before 1900 share key 0 and times after 4077 the largest key.
- `relevance` sorts by score, which Tantivy cannot restrict to a range. So a page
  fetches the top N hits, drops the last score group (possibly incomplete), orders
  the rest by (score desc, id desc), keeps what follows `after`, and doubles N until
  the page is full or the hits run out. Page k costs O(k * limit) hits: relevance
  pages are read from the front, rarely deep. Scores are those of the searcher's
  commit; a commit between two pages moves them, as any rank of a changing index
  would.

Hits are ids and sort keys only; the caller joins them against PostgreSQL and builds
the highlights from the bodies it reads there (`search.excerpt`), as for every backend.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import tantivy
from sqlalchemy.ext.asyncio import AsyncSession
from tantivy import Occur, Order, Query

from mailsvc.search.backend import (
    Hit,
    HitPage,
    IndexState,
    SearchDocument,
    SearchRebuilding,
)
from mailsvc.search.filter import MessageFilter, Position
from mailsvc.search.filter import Order as PageOrder
from mailsvc.search.rebuild_requests import RebuildRequests
from mailsvc.search.tantivy import schema
from mailsvc.search.tantivy.compile import compile_filter
from mailsvc.search.tantivy.store import IndexStore, IndexUnavailable, is_tantivy_failure

# Hits fetched beyond a page's need: the last key group is held back, and `after`'s own
# hit comes back with the first fetch.
_SLACK = 2


class TantivyBackend:
    """`SearchBackend` over one Tantivy index per tenant under `root`."""

    name = "tantivy"

    def __init__(self, root: Path, *, request_rebuild: Callable[[str], Awaitable[None]]) -> None:
        """`request_rebuild(tenant_id)` is awaited when a search finds the tenant's
        index MISSING or BUILDING (throttled: `search.rebuild_requests`)."""
        self._store = IndexStore(root)
        self._rebuilds = RebuildRequests(request_rebuild)

    async def search(
        self,
        tenant_id: str,
        filters: MessageFilter,
        *,
        order: PageOrder,
        after: Position | None,
        limit: int,
    ) -> HitPage:
        """One page of hits (see `SearchBackend.search` and the module docstring)."""
        if limit < 1:
            raise ValueError("limit must be at least 1")
        if after is not None and isinstance(after.key, datetime) == (order == "relevance"):
            raise ValueError(f"a page in {order} order cannot continue after {after.key!r}")
        outcome = await asyncio.to_thread(
            self._search, tenant_id, filters, order=order, after=after, limit=limit
        )
        if isinstance(outcome, HitPage):
            return outcome
        state, reason = outcome
        # BUILDING asks too: the job drains the tenant, which finishes a rebuild that
        # a crashed process left half-way (its queue rows are still there) or marks
        # ready one whose queue was emptied just before the crash.
        await self._rebuilds.ask(tenant_id, reason=reason, missing=state is IndexState.MISSING)
        raise SearchRebuilding(tenant_id, reason)

    async def state(self, tenant_id: str) -> IndexState:
        """The index state, after checking every segment file that changed."""
        health = await asyncio.to_thread(self._store.open, tenant_id, thorough=True)
        return health.state

    async def reset(self, session: AsyncSession, tenant_id: str) -> None:
        """Replace the tenant's index by an empty one, BUILDING. `session` is unused:
        the index lives outside PostgreSQL."""
        await asyncio.to_thread(self._store.reset, tenant_id)

    async def write(
        self,
        session: AsyncSession,
        tenant_id: str,
        *,
        documents: Sequence[SearchDocument],
        removed: Sequence[uuid.UUID],
    ) -> None:
        """Replace `documents` by id and delete `removed`, committed to the index
        before this returns (`session` is unused: the caller commits its queue after,
        and a crash in between repeats the batch, which replacing by id absorbs).

        Raises `store.IndexBusy` while another writer holds the index, and
        `SearchRebuilding` when the index is MISSING (rebuild it: `reset` first).
        """
        try:
            await asyncio.to_thread(
                self._store.write, tenant_id, documents=documents, removed=removed
            )
        except IndexUnavailable as error:
            raise SearchRebuilding(tenant_id, error.reason) from error

    async def mark_ready(self, session: AsyncSession, tenant_id: str) -> None:
        """Mark the rebuilt index READY (`session` unused)."""
        try:
            await asyncio.to_thread(self._store.mark_ready, tenant_id)
        except IndexUnavailable as error:
            raise SearchRebuilding(tenant_id, error.reason) from error

    async def aclose(self) -> None:
        """Close every cached reader."""
        await asyncio.to_thread(self._store.close)

    def _search(
        self,
        tenant_id: str,
        filters: MessageFilter,
        *,
        order: PageOrder,
        after: Position | None,
        limit: int,
    ) -> HitPage | tuple[IndexState, str]:
        """The page, or why the index cannot answer (blocking)."""
        health = self._store.open(tenant_id)
        if health.searcher is None:
            return health.state, health.reason
        query = compile_filter(filters)
        try:
            return _page(
                health.searcher,
                query,
                order=order,
                after=after,
                limit=limit,
            )
        except BaseException as error:
            if not is_tantivy_failure(error):
                raise
            corrupt = self._store.diagnose(tenant_id)
            if corrupt is None:
                raise
            return IndexState.MISSING, corrupt


# -- paging (blocking, pure apart from the searcher) -------------------------------------


@dataclass(frozen=True, slots=True)
class _Row:
    group: int | float
    """The order key or the score: rows of one group are ordered in Python."""
    received: int
    """Microseconds since the epoch (0 when the order does not need it)."""
    id: uuid.UUID
    address: tantivy.DocAddress


def _page(
    searcher: tantivy.Searcher,
    query: Query,
    *,
    order: PageOrder,
    after: Position | None,
    limit: int,
) -> HitPage:
    if order == "relevance":
        rows = _by_relevance(searcher, query, after=after, wanted=limit + 1)
    else:
        rows = _by_date(searcher, query, descending=order == "newest", after=after,
                        wanted=limit + 1)  # fmt: skip
    page = rows[:limit]
    hits = []
    for row in page:
        key: datetime | float
        key = float(row.group) if order == "relevance" else schema.from_micros(row.received)
        hits.append(Hit(message_id=row.id, key=key))
    return HitPage(hits=hits, more=len(rows) > limit)


def _by_date(
    searcher: tantivy.Searcher,
    query: Query,
    *,
    descending: bool,
    after: Position | None,
    wanted: int,
) -> list[_Row]:
    """Up to `wanted` rows after `after` in (received_at, id) order."""
    start: tuple[int, uuid.UUID] | None = None
    bound: int | None = None
    inclusive = True
    if after is not None:
        assert isinstance(after.key, datetime)  # search() checked
        start = (schema.micros(after.key), after.id)
        bound = schema.order_key(after.key, after.id)
    rows: list[_Row] = []
    while True:
        fetch = wanted - len(rows) + _SLACK
        hits = searcher.search(
            _from_key(query, bound, inclusive=inclusive, descending=descending),
            limit=fetch, count=False, order_by_field=schema.ORDER_KEY,
            order=Order.Desc if descending else Order.Asc,
        ).hits  # fmt: skip
        exhausted = len(hits) < fetch
        if not exhausted:
            # The farthest key fetched, computed rather than read off the last hit, so
            # that the window below narrows whatever order Tantivy returned them in.
            keys = [int(_number(key)) for key, _ in hits]
            last = min(keys) if descending else max(keys)
            complete = [hit for hit, key in zip(hits, keys, strict=True) if key != last]
            if complete:
                hits, window = complete, (last, True)
            else:
                hits, window = _whole_group(searcher, query, last), (last, False)
            # The termination argument: every round that does not return narrows the
            # window of keys still to read, and there are finitely many keys. Should
            # Tantivy ever answer outside the window, fail rather than spin.
            if not _narrows(window, (bound, inclusive), descending=descending):
                raise RuntimeError(f"search paging made no progress past order key {bound}")
            bound, inclusive = window
            # Past the whole group of the first or last key (the saturated keys of
            # times before 1900 or after 4077) there is nothing left to ask for.
            end = 0 if descending else schema.MAX_ORDER_KEY
            exhausted = last == end and not inclusive
        batch = _rows(searcher, hits, with_received=True)
        batch.sort(key=lambda row: (row.received, row.id), reverse=descending)
        if start is not None:
            batch = [row for row in batch if _follows((row.received, row.id), start, descending)]
        rows += batch
        if len(rows) >= wanted or exhausted:
            return rows[:wanted]


def _narrows(
    window: tuple[int, bool], previous: tuple[int | None, bool], *, descending: bool
) -> bool:
    """Whether the keys from `window` on are strictly fewer than from `previous` on
    (each a key and whether it is included; `previous` None: every key)."""
    key, inclusive = window
    before, was_inclusive = previous
    if before is None:
        return True
    if key == before:
        return was_inclusive and not inclusive
    return key < before if descending else key > before


def _follows(row: tuple[int, uuid.UUID], start: tuple[int, uuid.UUID], descending: bool) -> bool:
    """Whether `row` comes strictly after `start` in the page order."""
    return row < start if descending else row > start


def _from_key(query: Query, bound: int | None, *, inclusive: bool, descending: bool) -> Query:
    """`query` restricted to order keys from `bound` on, in the page's direction."""
    if bound is None:
        return query
    lower, upper = (None, bound) if descending else (bound, None)
    # Tantivy refuses an exclusive unbounded side.
    window = Query.range_query(
        schema.SCHEMA, schema.ORDER_KEY, tantivy.FieldType.Unsigned, lower, upper,
        include_lower=inclusive or lower is None, include_upper=inclusive or upper is None,
    )  # fmt: skip
    return Query.boolean_query([(Occur.Must, query), (Occur.Must, window)])


def _whole_group(
    searcher: tantivy.Searcher, query: Query, key: int
) -> list[tuple[object, tantivy.DocAddress]]:
    """Every hit whose order key is `key` (a group larger than one fetch)."""
    group = Query.range_query(schema.SCHEMA, schema.ORDER_KEY, tantivy.FieldType.Unsigned, key, key)
    exact = Query.boolean_query([(Occur.Must, query), (Occur.Must, group)])
    fetch = 64
    # Ends: the fetch grows until it exceeds the group, which is finite.
    while True:
        hits = searcher.search(exact, limit=fetch, count=False).hits
        if len(hits) < fetch:
            return hits
        fetch *= 4


def _by_relevance(
    searcher: tantivy.Searcher, query: Query, *, after: Position | None, wanted: int
) -> list[_Row]:
    """Up to `wanted` rows after `after` in (score desc, id desc) order."""
    start: tuple[float, uuid.UUID] | None = None
    if after is not None:
        assert not isinstance(after.key, datetime)  # search() checked
        start = (float(after.key), after.id)
    fetch = wanted + _SLACK
    # Ends: the fetch doubles until it exceeds the matching documents, whatever the
    # scores and `after` (a NaN or infinite score only keeps every row or none).
    while True:
        hits = searcher.search(query, limit=fetch, count=False).hits
        exhausted = len(hits) < fetch
        if not exhausted:
            last = hits[-1][0]
            hits = [hit for hit in hits if hit[0] != last]
        rows = _rows(searcher, hits, with_received=False)
        rows.sort(key=lambda row: (row.group, row.id), reverse=True)
        if start is not None:
            rows = [row for row in rows if (row.group, row.id) < start]
        if len(rows) >= wanted or exhausted:
            return rows[:wanted]
        fetch *= 2


def _rows(
    searcher: tantivy.Searcher,
    hits: Sequence[tuple[object, tantivy.DocAddress]],
    *,
    with_received: bool,
) -> list[_Row]:
    """The hits with their ids (and received times) read from the fast fields."""
    if not hits:
        return []
    addresses = [address for _, address in hits]
    highs = searcher.fast_field_values(schema.ID_HIGH, addresses)
    lows = searcher.fast_field_values(schema.ID_LOW, addresses)
    received = (
        searcher.fast_field_values(schema.RECEIVED, addresses)
        if with_received
        else [0] * len(addresses)
    )
    return [
        _Row(
            group=_number(group),
            received=int(_number(moment)),
            id=uuid.UUID(int=int(_number(high)) << 64 | int(_number(low))),
            address=address,
        )
        for (group, address), high, low, moment in zip(hits, highs, lows, received, strict=True)
    ]


def _number(value: object) -> int | float:
    if isinstance(value, int | float):
        return value
    raise ValueError(f"a search document lacks a fast field value: {value!r}")
