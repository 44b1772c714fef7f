"""The Tantivy search backend beyond the conformance table: exact paging over ties,
replacing and removing documents, index states, several processes on
one index directory, and rebuild requests. Real Tantivy indexes in temporary
directories; the session argument is one connected to nothing (the index lives
outside PostgreSQL, and the backend must never use it).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
import secrets
import shutil
import threading
import uuid
from collections.abc import AsyncIterator, Sequence
from concurrent.futures import Future
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from pathlib import Path

import pytest
import structlog
import structlog.testing
import tantivy
from sqlalchemy.ext.asyncio import AsyncSession

from mailsvc.search import rebuild_requests
from mailsvc.search.backend import (
    Address,
    HitPage,
    IndexState,
    SearchDocument,
    SearchRebuilding,
)
from mailsvc.search.filter import MessageFilter, Order, Position
from mailsvc.search.tantivy import IndexBusy, TantivyBackend, schema
from mailsvc.search.tantivy.store import SIDECAR_NAME
from tests.search.backend_conformance import all_hits

SESSION = AsyncSession()
ACCOUNT = uuid.UUID("00000000-0000-4000-8000-00000000000a")
INBOX = uuid.UUID("00000000-0000-4000-8000-0000000000b0")
NOON = datetime(2026, 5, 4, 12, 0, 0, tzinfo=UTC)
ALICE = Address("Alice Smith", "alice@acme.test")


class RebuildRequests:
    """`request_rebuild`: records which tenants asked."""

    def __init__(self) -> None:
        self.tenants: list[str] = []

    async def __call__(self, tenant_id: str) -> None:
        self.tenants.append(tenant_id)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "search"


@pytest.fixture
def rebuilds() -> RebuildRequests:
    return RebuildRequests()


@pytest.fixture
async def backend(root: Path, rebuilds: RebuildRequests) -> AsyncIterator[TantivyBackend]:
    backend = TantivyBackend(root, request_rebuild=rebuilds)
    yield backend
    await backend.aclose()


@pytest.fixture
def tenant() -> str:
    return f"t-{secrets.token_hex(5)}"


def document(
    *,
    body: str = "",
    subject: str = "",
    received_at: datetime = NOON,
    message_id: uuid.UUID | None = None,
    sender: Address = ALICE,
    thread_id: uuid.UUID | None = None,
    account_id: uuid.UUID = ACCOUNT,
) -> SearchDocument:
    return SearchDocument(
        id=message_id or uuid.uuid4(),
        account_id=account_id,
        mailbox_id=INBOX,
        thread_id=thread_id,
        received_at=received_at,
        seen=True,
        flagged=False,
        has_attachments=False,
        subject=subject,
        from_=(sender,),
        to=(),
        reply_to=(),
        body=body,
    )


async def ready_index(
    backend: TantivyBackend, tenant: str, documents: Sequence[SearchDocument]
) -> None:
    await backend.reset(SESSION, tenant)
    await backend.write(SESSION, tenant, documents=documents, removed=[])
    await backend.mark_ready(SESSION, tenant)


async def ids_of(
    backend: TantivyBackend, tenant: str, filters: MessageFilter, *, order: Order = "newest",
    page_size: int = 10,
) -> list[uuid.UUID]:  # fmt: skip
    hits = await all_hits(backend, tenant, filters, order=order, page_size=page_size)
    return [hit.message_id for hit in hits]


def index_directory(root: Path, tenant: str) -> Path:
    """Where the backend keeps a tenant's index (store.py's documented layout)."""
    return root / hashlib.sha256(tenant.encode()).hexdigest()[:32]


# -- paging -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "received_at",
    [NOON, datetime(1850, 1, 1, tzinfo=UTC)],
    ids=["same-second", "before-1900-one-key"],  # the second: one order-key group for all
)
async def test_pages_are_exact_when_every_message_shares_its_time(
    backend: TantivyBackend, tenant: str, received_at: datetime
) -> None:
    documents = [document(body="budget", received_at=received_at) for _ in range(50)]
    await ready_index(backend, tenant, documents)
    ids = sorted(doc.id for doc in documents)
    filters = MessageFilter(text="budget")

    assert await ids_of(backend, tenant, filters, order="newest", page_size=7) == ids[::-1]
    assert await ids_of(backend, tenant, filters, order="oldest", page_size=7) == ids
    # Equal bodies score alike: relevance falls back to the id, descending.
    assert await ids_of(backend, tenant, filters, order="relevance", page_size=7) == ids[::-1]
    hits = await all_hits(backend, tenant, filters, order="newest", page_size=7)
    assert {hit.key for hit in hits} == {received_at}


async def test_pages_are_exact_over_mixed_times_and_scores(
    backend: TantivyBackend, tenant: str
) -> None:
    rng = random.Random(13)
    seconds = [NOON + timedelta(seconds=rng.randrange(4)) for _ in range(60)]
    # 0-3 times "budget" in bodies of one length: four score levels.
    counts = [rng.randrange(1, 4) for _ in range(60)]
    documents = [
        document(body=" ".join(["budget"] * n + ["filler"] * (3 - n)), received_at=at)
        for n, at in zip(counts, seconds, strict=True)
    ]
    await ready_index(backend, tenant, documents)
    filters = MessageFilter(text="budget")
    by_time = sorted(documents, key=lambda doc: (doc.received_at, doc.id))
    by_score = sorted(documents, key=lambda doc: (doc.body.count("budget"), doc.id), reverse=True)

    for page_size in (1, 7, 60):
        newest = await ids_of(backend, tenant, filters, order="newest", page_size=page_size)
        assert newest == [doc.id for doc in reversed(by_time)]
        oldest = await ids_of(backend, tenant, filters, order="oldest", page_size=page_size)
        assert oldest == [doc.id for doc in by_time]
        relevance = await ids_of(backend, tenant, filters, order="relevance", page_size=page_size)
        assert relevance == [doc.id for doc in by_score]


async def test_a_page_reports_its_keys(backend: TantivyBackend, tenant: str) -> None:
    early, late = NOON, NOON + timedelta(microseconds=1)
    documents = [document(body="budget", received_at=early), document(body="budget budget",
                 received_at=late)]  # fmt: skip
    await ready_index(backend, tenant, documents)

    page = await backend.search(tenant, MessageFilter(text="budget"), order="newest",
                                after=None, limit=1)  # fmt: skip
    assert page.more
    assert page.hits[0].key == late
    assert page.hits[0].key.tzinfo is not None  # type: ignore[union-attr]
    page = await backend.search(tenant, MessageFilter(text="budget"), order="relevance",
                                after=None, limit=2)  # fmt: skip
    assert not page.more
    scores = [hit.key for hit in page.hits]
    assert all(isinstance(score, float) for score in scores)
    assert scores[0] > scores[1]  # type: ignore[operator]


# A page that takes longer than this is one whose paging loop never ends.
DEADLINE_SECONDS = 60.0


async def bounded_page(
    backend: TantivyBackend, tenant: str, filters: MessageFilter, *, order: Order,
    after: Position | None, limit: int,
) -> HitPage:  # fmt: skip
    """One page as `backend.search` answers it under a deadline.

    Its blocking part runs in a daemon thread of its own: a paging loop that never
    ends fails the test at the deadline, and the thread left spinning holds up
    neither the event loop's executor nor the session's teardown (an
    `asyncio.to_thread` call would: the loop waits for its threads when it closes).
    """
    answer: Future[HitPage | tuple[IndexState, str]] = Future()

    def run() -> None:
        if not answer.set_running_or_notify_cancel():
            return
        try:
            answer.set_result(backend._search(tenant, filters, order=order, after=after,
                                              limit=limit))  # fmt: skip
        except BaseException as error:
            answer.set_exception(error)

    threading.Thread(target=run, name="bounded-search", daemon=True).start()
    outcome = await asyncio.wait_for(asyncio.wrap_future(answer), DEADLINE_SECONDS)
    assert isinstance(outcome, HitPage)
    return outcome


async def bounded_ids(
    backend: TantivyBackend, tenant: str, filters: MessageFilter, *, order: Order,
    after: Position | None, page_size: int,
) -> list[uuid.UUID]:  # fmt: skip
    """Every id after `after`, page after page (`bounded_page`)."""
    ids: list[uuid.UUID] = []
    while True:
        page = await bounded_page(backend, tenant, filters, order=order, after=after,
                                  limit=page_size)  # fmt: skip
        ids += [hit.message_id for hit in page.hits]
        if not page.more:
            assert len(set(ids)) == len(ids), "a message came back twice"
            return ids
        assert page.hits, "a page with more to come has hits"
        after = Position(page.hits[-1].key, page.hits[-1].message_id)


def expected_ids(
    documents: Sequence[SearchDocument], *, order: Order, after: Position | None
) -> list[uuid.UUID]:
    """The documented date order: received time, then id; descending for `newest`;
    strictly after `after`."""
    descending = order == "newest"
    rows = sorted(((doc.received_at, doc.id) for doc in documents), reverse=descending)
    if after is not None:
        assert isinstance(after.key, datetime)
        start = (after.key, after.id)
        rows = [row for row in rows if (row < start if descending else row > start)]
    return [message_id for _, message_id in rows]


def at(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0,
    microsecond: int = 0,
) -> datetime:  # fmt: skip
    return datetime(year, month, day, hour, minute, second, microsecond, tzinfo=UTC)


LOWEST_ID = uuid.UUID(int=0)
HIGHEST_ID = uuid.UUID(int=(1 << 128) - 1)


def _saturated_mailbox(rng: random.Random) -> list[SearchDocument]:
    """Messages at both ends of the order key (key 0 before 1900, the largest key
    after 4077), each end one group larger than `_whole_group`'s first fetch (64) and
    also holding other times, plus ordinary times with ties; ids at the extremes."""
    times = (
        [at(1850, 1, 1)] * 70
        + [at(1, 1, 1), at(1600, 6, 1), at(1899, 12, 31, 23, 59, 59, 999999)]
        + [at(1900, 1, 1)] * 3  # key 0 itself when the id's first byte is 0
        + [NOON] * 12
        + [NOON + timedelta(microseconds=n) for n in (1, 1, 2)]
        + [at(4077, 1, 1), at(4077, 12, 31), at(9999, 12, 31, 23, 59, 59, 999999)]
        + [at(4100, 1, 1)] * 70
    )
    ids = [uuid.UUID(int=rng.getrandbits(128)) for _ in times]
    ids[:3] = [LOWEST_ID, HIGHEST_ID, uuid.UUID(int=1 << 120)]
    ids[-3:] = [uuid.UUID(int=(1 << 120) - 1), uuid.UUID(int=2), uuid.UUID(int=3)]
    ids[73] = uuid.UUID(int=5)  # 1900-01-01 with the id's first byte 0: key 0 too
    return [document(sender=ALICE, received_at=moment, message_id=message_id)
            for moment, message_id in zip(times, ids, strict=True)]  # fmt: skip


# Cursors the API may be sent (crafted ones included): far outside the data, inside
# each saturated group, between groups, in other time zones.
FAR_POSITIONS = [
    Position(at(1, 1, 1), LOWEST_ID),
    Position(at(1, 1, 1), HIGHEST_ID),
    Position(at(1850, 1, 1), LOWEST_ID),
    Position(at(1850, 1, 1), HIGHEST_ID),
    Position(at(1850, 1, 1, 0, 0, 0, 1), LOWEST_ID),
    Position(at(1899, 12, 31, 23, 59, 59, 999999), HIGHEST_ID),
    Position(at(1900, 1, 1), LOWEST_ID),
    Position(at(2000, 1, 1), uuid.UUID(int=1 << 127)),
    Position(datetime(2026, 5, 4, 17, 0, tzinfo=timezone(timedelta(hours=5))), LOWEST_ID),
    Position(NOON, HIGHEST_ID),
    Position(at(3000, 1, 1), LOWEST_ID),
    Position(at(4100, 1, 1), LOWEST_ID),
    Position(at(4100, 1, 1), HIGHEST_ID),
    Position(at(9999, 12, 31, 23, 59, 59, 999999), LOWEST_ID),
    Position(at(9999, 12, 31, 23, 59, 59, 999999), HIGHEST_ID),
]


@pytest.mark.parametrize("order", ["newest", "oldest"])
async def test_date_pages_end_and_are_exact_at_the_saturated_keys_from_any_position(
    backend: TantivyBackend, tenant: str, order: Order
) -> None:
    # A regression of the paging loop (a round that does not narrow the keys still to
    # read) spins forever; bounded_page turns that into a failure at its deadline.
    documents = _saturated_mailbox(random.Random(29))
    await ready_index(backend, tenant, documents)
    # No free text, as for the REST from/to parameters: the match does not rank.
    filters = MessageFilter(from_=("alice@acme.test",))
    in_order = expected_ids(documents, order=order, after=None)
    by_id = {doc.id: doc for doc in documents}
    own = [Position(by_id[i].received_at, i) for i in in_order[::5]]

    for page_size in (1, 7, 64, len(documents)):
        ids = await bounded_ids(backend, tenant, filters, order=order, after=None,
                                page_size=page_size)  # fmt: skip
        assert ids == in_order, page_size
    for after in [*FAR_POSITIONS, *own]:
        wanted = expected_ids(documents, order=order, after=after)
        page = await bounded_page(backend, tenant, filters, order=order, after=after, limit=7)
        assert [hit.message_id for hit in page.hits] == wanted[:7], after
        assert page.more == (len(wanted) > 7), after
        assert await bounded_ids(backend, tenant, filters, order=order, after=after,
                                 page_size=7) == wanted, after  # fmt: skip


async def test_relevance_pages_end_after_any_score(backend: TantivyBackend, tenant: str) -> None:
    documents = [document(body="budget") for _ in range(40)]
    await ready_index(backend, tenant, documents)
    ids = sorted((doc.id for doc in documents), reverse=True)  # equal scores: id desc
    filters = MessageFilter(text="budget")

    for score, wanted in ((float("inf"), ids), (1e308, ids), (-0.0, []), (float("-inf"), [])):
        for after_id in (LOWEST_ID, HIGHEST_ID):
            after = Position(score, after_id)
            page = await bounded_page(backend, tenant, filters, order="relevance", after=after,
                                      limit=7)  # fmt: skip
            assert [hit.message_id for hit in page.hits] == wanted[:7], after
            assert await bounded_ids(backend, tenant, filters, order="relevance", after=after,
                                     page_size=7) == wanted, after  # fmt: skip
    # Nothing compares with NaN: what follows it is not defined, but the page ends.
    page = await bounded_page(backend, tenant, filters, order="relevance",
                              after=Position(float("nan"), HIGHEST_ID), limit=7)  # fmt: skip
    assert len(page.hits) <= 7


class _NoOffset(tzinfo):
    """A time zone that knows no offset: as naive as none."""

    def utcoffset(self, moment: datetime | None) -> timedelta | None:
        return None

    def dst(self, moment: datetime | None) -> timedelta | None:
        return None

    def tzname(self, moment: datetime | None) -> str | None:
        return None


@pytest.mark.parametrize("key", [datetime(2026, 5, 4, 12), datetime(2026, 5, 4, 12,
                                 tzinfo=_NoOffset())], ids=["naive", "no-offset"])  # fmt: skip
async def test_a_date_position_without_an_offset_is_refused(
    backend: TantivyBackend, tenant: str, key: datetime
) -> None:
    await ready_index(backend, tenant, [document(body="budget")])

    for order in ("newest", "oldest"):
        with pytest.raises(ValueError, match="timezone-aware"):
            await bounded_page(backend, tenant, MessageFilter(text="budget"), order=order,
                               after=Position(key, LOWEST_ID), limit=7)  # fmt: skip


# -- replacing and removing ------------------------------------------------------------------


async def test_a_document_written_twice_is_found_once_as_last_written(
    backend: TantivyBackend, tenant: str
) -> None:
    first = document(subject="draft plan", body="budget")
    await ready_index(backend, tenant, [first])
    second = replace(first, subject="final plan")
    await backend.write(SESSION, tenant, documents=[second], removed=[])
    await backend.write(SESSION, tenant, documents=[second, second], removed=[])

    assert await ids_of(backend, tenant, MessageFilter(text="budget")) == [first.id]
    assert await ids_of(backend, tenant, MessageFilter(subject=('"final"',))) == [first.id]
    assert await ids_of(backend, tenant, MessageFilter(subject=('"draft"',))) == []


async def test_removed_documents_are_no_longer_found(backend: TantivyBackend, tenant: str) -> None:
    kept, gone = document(body="budget"), document(body="budget")
    await ready_index(backend, tenant, [kept, gone])

    await backend.write(SESSION, tenant, documents=[], removed=[gone.id, uuid.uuid4()])
    assert await ids_of(backend, tenant, MessageFilter(text="budget")) == [kept.id]


# -- filters the conformance mailbox does not cover ----------------------------------------------


async def test_account_and_thread_filters(backend: TantivyBackend, tenant: str) -> None:
    thread, other_account = uuid.uuid4(), uuid.uuid4()
    in_thread = document(body="budget", thread_id=thread)
    elsewhere = document(body="budget", account_id=other_account)
    await ready_index(backend, tenant, [in_thread, elsewhere, document(body="budget")])

    found = await ids_of(backend, tenant, MessageFilter(text="budget", thread_id=thread))
    assert found == [in_thread.id]
    found = await ids_of(backend, tenant, MessageFilter(account_id=other_account))
    assert found == [elsewhere.id]
    assert await ids_of(backend, tenant, MessageFilter(mailbox_ids=())) == []


async def test_a_from_phrase_stays_within_one_name_or_address(
    backend: TantivyBackend, tenant: str
) -> None:
    message = document(sender=ALICE, body="hello")
    await ready_index(backend, tenant, [message])

    assert await ids_of(backend, tenant, MessageFilter(from_=("Alice Smith",))) == [message.id]
    assert await ids_of(backend, tenant, MessageFilter(from_=("acme.test",))) == [message.id]
    # "smith" ends the name and "alice" starts the address: not one phrase.
    assert await ids_of(backend, tenant, MessageFilter(from_=("smith alice",))) == []


async def test_text_without_words_matches_nothing(backend: TantivyBackend, tenant: str) -> None:
    budget = document(body="budget")
    await ready_index(backend, tenant, [budget])

    assert await ids_of(backend, tenant, MessageFilter(text="!!! ...")) == []
    assert await ids_of(backend, tenant, MessageFilter(from_=("@@",))) == []
    assert await ids_of(backend, tenant, MessageFilter(text="-draft")) == [budget.id]


# -- index states --------------------------------------------------------------------------------


async def test_a_rebuild_goes_from_missing_through_building_to_ready(
    backend: TantivyBackend, tenant: str, rebuilds: RebuildRequests
) -> None:
    assert await backend.state(tenant) is IndexState.MISSING

    await backend.reset(SESSION, tenant)
    assert await backend.state(tenant) is IndexState.BUILDING
    await backend.write(SESSION, tenant, documents=[document(body="budget")], removed=[])
    with pytest.raises(SearchRebuilding):
        await backend.search(tenant, MessageFilter(text="budget"), order="newest", after=None,
                             limit=10)  # fmt: skip
    # The job drains the tenant: it finishes a rebuild that a crash may have cut short.
    assert rebuilds.tenants == [tenant]

    await backend.mark_ready(SESSION, tenant)
    assert await backend.state(tenant) is IndexState.READY
    assert len(await ids_of(backend, tenant, MessageFilter(text="budget"))) == 1


async def test_a_deleted_directory_is_missing(
    backend: TantivyBackend, root: Path, tenant: str
) -> None:
    await ready_index(backend, tenant, [document(body="budget")])
    assert len(await ids_of(backend, tenant, MessageFilter(text="budget"))) == 1

    shutil.rmtree(index_directory(root, tenant))
    assert await backend.state(tenant) is IndexState.MISSING
    with pytest.raises(SearchRebuilding):
        await ids_of(backend, tenant, MessageFilter(text="budget"))
    with pytest.raises(SearchRebuilding):  # writes wait for the reset of a rebuild
        await backend.write(SESSION, tenant, documents=[document()], removed=[])


def _spoil_largest_segment_file(directory: Path) -> None:
    """Overwrite bytes in the middle of the largest segment file (its footer intact)."""
    segment_files = [path for path in directory.iterdir() if not path.name.startswith((".",
                     "meta.json", SIDECAR_NAME))]  # fmt: skip
    largest = max(segment_files, key=lambda path: path.stat().st_size)
    data = bytearray(largest.read_bytes())
    middle = len(data) // 3
    data[middle : middle + 16] = bytes(byte ^ 0xFF for byte in data[middle : middle + 16])
    largest.write_bytes(bytes(data))


async def test_garbage_in_a_segment_file_makes_the_index_missing(
    backend: TantivyBackend, root: Path, tenant: str, rebuilds: RebuildRequests
) -> None:
    bodies = [f"budget report number {n} " + "words " * 200 for n in range(200)]
    await ready_index(backend, tenant, [document(body=body) for body in bodies])
    assert len(await ids_of(backend, tenant, MessageFilter(text="budget"), page_size=100)) == 200

    _spoil_largest_segment_file(index_directory(root, tenant))
    # Another process opening the index now finds it corrupt on its first search...
    other = TantivyBackend(root, request_rebuild=rebuilds)
    with pytest.raises(SearchRebuilding, match="corrupt"):
        await ids_of(other, tenant, MessageFilter(text="budget"))
    assert rebuilds.tenants == [tenant]
    await other.aclose()
    # ...and this one, which had it open already, when it checks the state.
    assert await backend.state(tenant) is IndexState.MISSING
    with pytest.raises(SearchRebuilding, match="corrupt"):
        await ids_of(backend, tenant, MessageFilter(text="budget"))

    await ready_index(backend, tenant, [document(body="budget")])  # the rebuild repairs it
    assert await backend.state(tenant) is IndexState.READY


async def test_another_tenants_index_is_missing(
    backend: TantivyBackend, root: Path, tenant: str
) -> None:
    other_tenant = f"{tenant}-other"
    await ready_index(backend, other_tenant, [document(body="secret")])
    await ready_index(backend, tenant, [document(body="budget")])

    # A backup restored into the wrong place: tenant's directory holds the other's index.
    shutil.rmtree(index_directory(root, tenant))
    shutil.copytree(index_directory(root, other_tenant), index_directory(root, tenant))
    assert await backend.state(tenant) is IndexState.MISSING
    with pytest.raises(SearchRebuilding, match="another tenant"):
        await ids_of(backend, tenant, MessageFilter(text="secret"))


async def test_an_index_of_another_schema_version_is_missing(
    backend: TantivyBackend, root: Path, tenant: str
) -> None:
    await ready_index(backend, tenant, [document(body="budget")])
    sidecar = index_directory(root, tenant) / SIDECAR_NAME
    content = json.loads(sidecar.read_text())
    assert content == {"schema_version": schema.SCHEMA_VERSION, "tenant_id": tenant,
                       "state": "ready"}  # fmt: skip

    sidecar.write_text(json.dumps(content | {"schema_version": schema.SCHEMA_VERSION - 1}))
    assert await backend.state(tenant) is IndexState.MISSING
    sidecar.unlink()
    assert await backend.state(tenant) is IndexState.MISSING


async def test_a_missing_index_asks_for_its_rebuild_once(
    backend: TantivyBackend,
    tenant: str,
    rebuilds: RebuildRequests,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The module's own logger, captured: structlog's `capture_logs` misses loggers
    # that an earlier test of the run has cached already.
    captured = structlog.testing.CapturingLogger()
    monkeypatch.setattr(rebuild_requests, "log", structlog.wrap_logger(captured, processors=[]))
    for _ in range(3):
        with pytest.raises(SearchRebuilding) as raised:
            await backend.search(tenant, MessageFilter(text="budget"), order="newest",
                                 after=None, limit=10)  # fmt: skip
        assert raised.value.tenant_id == tenant
    assert rebuilds.tenants == [tenant]
    missing = [call for call in captured.calls if call.kwargs["event"] == "search.index_missing"]
    assert [(call.method_name, call.kwargs) for call in missing] == [
        ("warning", {"event": "search.index_missing", "tenant_id": tenant,
                     "reason": "no index directory"}),
    ]  # fmt: skip


async def test_a_failed_rebuild_request_is_asked_again(root: Path, tenant: str) -> None:
    asked: list[str] = []

    async def unreachable(tenant_id: str) -> None:
        asked.append(tenant_id)
        raise ConnectionError("the queue is down")

    backend = TantivyBackend(root, request_rebuild=unreachable)
    for _ in range(2):
        with pytest.raises(SearchRebuilding):  # still the 503, never the queue's error
            await backend.search(tenant, MessageFilter(), order="newest", after=None,
                                 limit=10)  # fmt: skip
    assert asked == [tenant, tenant]
    await backend.aclose()


# -- several processes ---------------------------------------------------------------------------


async def test_a_reader_sees_commits_made_by_another_process(
    backend: TantivyBackend, root: Path, tenant: str, rebuilds: RebuildRequests
) -> None:
    """Two backends on one root stand for the indexer and an api process."""
    first = document(body="budget")
    await ready_index(backend, tenant, [first])
    reader = TantivyBackend(root, request_rebuild=rebuilds)
    try:
        assert await ids_of(reader, tenant, MessageFilter(text="budget")) == [first.id]

        second = document(body="budget", received_at=NOON + timedelta(seconds=1))
        await backend.write(SESSION, tenant, documents=[second], removed=[first.id])
        assert await ids_of(reader, tenant, MessageFilter(text="budget")) == [second.id]

        await backend.reset(SESSION, tenant)  # a rebuild starts elsewhere
        with pytest.raises(SearchRebuilding):
            await ids_of(reader, tenant, MessageFilter(text="budget"))
        await backend.mark_ready(SESSION, tenant)
        assert await ids_of(reader, tenant, MessageFilter(text="budget")) == []
    finally:
        await reader.aclose()


async def test_a_second_writer_is_refused_as_busy(
    backend: TantivyBackend, root: Path, tenant: str
) -> None:
    await ready_index(backend, tenant, [document(body="budget")])
    # Another process's writer holds Tantivy's lock on the directory.
    index = tantivy.Index.open(str(index_directory(root, tenant)))
    writer = index.writer(heap_size=15_000_000, num_threads=1)
    try:
        with pytest.raises(IndexBusy):
            await backend.write(SESSION, tenant, documents=[document(body="more")], removed=[])
    finally:
        writer.wait_merging_threads()  # releases the lock
    await backend.write(SESSION, tenant, documents=[document(body="budget")], removed=[])
    assert len(await ids_of(backend, tenant, MessageFilter(text="budget"))) == 2


# -- the order key -------------------------------------------------------------------------------


def test_the_order_key_never_decreases_in_received_time_and_id() -> None:
    rng = random.Random(7)
    moments = [
        datetime(1850, 1, 1, tzinfo=UTC),
        datetime(1900, 1, 1, tzinfo=UTC),
        datetime(4100, 1, 1, tzinfo=UTC),
        *(NOON + timedelta(microseconds=rng.randrange(3)) for _ in range(40)),
        *(NOON + timedelta(days=rng.randrange(-40_000, 40_000)) for _ in range(40)),
    ]
    pairs = sorted((moment, uuid.UUID(int=rng.getrandbits(128))) for moment in moments)
    keys = [schema.order_key(moment, message_id) for moment, message_id in pairs]
    assert keys == sorted(keys)
    assert all(0 <= key < 1 << 64 for key in keys)


async def test_a_position_of_another_order_is_refused(backend: TantivyBackend, tenant: str) -> None:
    message = document(body="budget")
    await ready_index(backend, tenant, [message])
    mismatched: list[tuple[Order, datetime | float]] = [
        ("relevance", NOON),
        ("newest", 1.5),
        ("oldest", 1.5),
    ]

    for order, key in mismatched:
        with pytest.raises(ValueError, match="cannot continue"):
            await backend.search(
                tenant, MessageFilter(text="budget"), order=order,
                after=Position(key, message.id), limit=1,
            )  # fmt: skip
