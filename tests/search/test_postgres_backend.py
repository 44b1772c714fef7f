"""The PostgreSQL search backend against a real PostgreSQL: writing, replacing and
removing documents, the filter's semantics, exact keyset pages, tenant scoping and
the index state.

Documents are written straight through `PostgresBackend.write` (the indexer's call),
each test in a tenant of its own; `message_search` has no foreign key to `messages`,
so no message rows are needed.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from mailsvc.kit.db import create_engine, create_sessionmaker
from mailsvc.kit.repository import TenantRepository
from mailsvc.models import MessageSearch, SearchIndexStateRow
from mailsvc.search.backend import (
    Address,
    Hit,
    IndexState,
    SearchDocument,
    SearchRebuilding,
)
from mailsvc.search.filter import MessageFilter, Order, Position
from mailsvc.search.postgres import PostgresBackend
from mailsvc.search.postgres import repository as search_repository
from mailsvc.search.postgres.lexemes import (
    SCHEMA_VERSION,
    VectorText,
    free_text_query,
    phrase_query,
)
from mailsvc.search.words import parse_free_text

BASE_TIME = datetime(2026, 10, 1, 9, tzinfo=UTC)


@pytest.fixture(scope="module")
async def sessionmaker(database_url: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = create_engine(database_url, pool_size=2)
    yield create_sessionmaker(engine)
    await engine.dispose()


@pytest.fixture
def backend(sessionmaker: async_sessionmaker[AsyncSession]) -> PostgresBackend:
    return PostgresBackend(sessionmaker)


@pytest.fixture
def tenant() -> str:
    return f"search-{uuid.uuid4().hex[:12]}"


def _document(**values: Any) -> SearchDocument:
    defaults: dict[str, Any] = {
        "id": uuid.uuid4(),
        "account_id": ACCOUNT,
        "mailbox_id": INBOX,
        "thread_id": None,
        "received_at": BASE_TIME,
        "seen": True,
        "flagged": False,
        "has_attachments": False,
        "subject": "",
        "from_": (Address("Alice Smith", "alice@acme.test"),),
        "to": (Address(None, "team@acme.test"),),
        "reply_to": (),
        "body": "",
    }
    return SearchDocument(**(defaults | values))


ACCOUNT = uuid.uuid4()
INBOX = uuid.uuid4()


async def _write(
    sessionmaker: async_sessionmaker[AsyncSession],
    backend: PostgresBackend,
    tenant: str,
    documents: Sequence[SearchDocument] = (),
    removed: Sequence[uuid.UUID] = (),
) -> None:
    async with sessionmaker.begin() as session:
        await backend.write(session, tenant, documents=documents, removed=removed)


async def _ids(
    backend: PostgresBackend,
    tenant: str,
    filters: MessageFilter,
    *,
    order: Order = "newest",
    limit: int = 100,
) -> list[uuid.UUID]:
    page = await backend.search(tenant, filters, order=order, after=None, limit=limit)
    assert not page.more
    return [hit.message_id for hit in page.hits]


async def _all_pages(
    backend: PostgresBackend, tenant: str, filters: MessageFilter, *, order: Order, limit: int
) -> list[Hit]:
    hits: list[Hit] = []
    after: Position | None = None
    while True:
        page = await backend.search(tenant, filters, order=order, after=after, limit=limit)
        hits += page.hits
        assert len(page.hits) <= limit
        assert len({hit.message_id for hit in hits}) == len(hits), "a hit came twice"
        if not page.more:
            return hits
        after = Position(page.hits[-1].key, page.hits[-1].message_id)


async def test_written_documents_are_found_by_their_words(
    sessionmaker: async_sessionmaker[AsyncSession], backend: PostgresBackend, tenant: str
) -> None:
    report = _document(subject="Quarterly report", body="Revenue grew in every region.")
    lunch = _document(
        subject="Lunch", body="Pizza or sushi?", from_=(Address("Carol", "carol@globex.test"),)
    )
    await _write(sessionmaker, backend, tenant, [report, lunch])

    def text(q: str) -> MessageFilter:
        return MessageFilter(text=q)

    assert await _ids(backend, tenant, text("REPORT")) == [report.id]
    assert await _ids(backend, tenant, text("region")) == [report.id]
    assert await _ids(backend, tenant, text("regions")) == []
    assert await _ids(backend, tenant, text("globex")) == [lunch.id]
    assert await _ids(backend, tenant, text("carol@globex.test")) == [lunch.id]
    assert await _ids(backend, tenant, text("pizza OR revenue"), order="oldest") == sorted(
        [report.id, lunch.id]
    )
    assert await _ids(backend, tenant, text("pizza -sushi")) == []
    assert await _ids(backend, tenant, text('"grew in every"')) == [report.id]
    assert await _ids(backend, tenant, text('"every grew"')) == []
    # Free text without a word matches nothing (as websearch_to_tsquery did).
    assert await _ids(backend, tenant, text("!!!")) == []


async def test_a_document_written_again_replaces_the_first(
    sessionmaker: async_sessionmaker[AsyncSession], backend: PostgresBackend, tenant: str
) -> None:
    first = _document(subject="Budget draft", seen=False)
    await _write(sessionmaker, backend, tenant, [first])
    second = replace(first, subject="Budget final", seen=True, mailbox_id=uuid.uuid4())
    # Twice in one batch too: the last one counts.
    await _write(sessionmaker, backend, tenant, [replace(first, subject="x"), second])

    assert await _ids(backend, tenant, MessageFilter(text="budget")) == [first.id]
    assert await _ids(backend, tenant, MessageFilter(text="draft")) == []
    assert await _ids(backend, tenant, MessageFilter(text="final", unread=False)) == [first.id]
    assert await _ids(backend, tenant, MessageFilter(text="final", mailbox_ids=(INBOX,))) == []
    async with sessionmaker() as session:
        rows = await session.scalars(
            TenantRepository(session, tenant).scoped.select(MessageSearch.message_id)
        )
        assert list(rows) == [first.id]


async def test_removed_documents_are_not_found(
    sessionmaker: async_sessionmaker[AsyncSession], backend: PostgresBackend, tenant: str
) -> None:
    kept, gone = _document(body="invoice"), _document(body="invoice")
    await _write(sessionmaker, backend, tenant, [kept, gone])
    await _write(sessionmaker, backend, tenant, removed=[gone.id, uuid.uuid4()])
    assert await _ids(backend, tenant, MessageFilter(text="invoice")) == [kept.id]


async def test_from_to_and_subject_match_whole_words_of_one_name_or_address(
    sessionmaker: async_sessionmaker[AsyncSession], backend: PostgresBackend, tenant: str
) -> None:
    alice = _document(
        subject="Quarterly report Q3",
        from_=(Address("Alice Smith", "alice@acme.test"),),
        to=(Address("Team", "team@acme.test"),),
    )
    bob = _document(
        subject="Report of the quarter",
        from_=(Address("Bob Stone", "bob@globex.test"),),
        to=(Address(None, "dana@example.test"), Address("Alice Smith", "alice@acme.test")),
    )
    await _write(sessionmaker, backend, tenant, [alice, bob])

    async def found(**filters: Any) -> set[uuid.UUID]:
        return set(await _ids(backend, tenant, MessageFilter(**filters)))

    assert await found(from_=("alice",)) == {alice.id}
    assert await found(from_=("Alice Smith",)) == {alice.id}
    assert await found(from_=("alice@acme.test",)) == {alice.id}
    assert await found(from_=("acme.test",)) == {alice.id}
    assert await found(from_=("ali",)) == set()
    # A phrase stays inside one name or address: "Smith" ends the name, "alice"
    # starts the address.
    assert await found(from_=("Smith alice",)) == set()
    assert await found(to=("alice",)) == {bob.id}
    assert await found(to=("example.test",)) == {bob.id}
    # The last To address and the next name do not make a phrase either.
    assert await found(to=("test alice",)) == set()
    assert await found(not_from=("alice",)) == {bob.id}
    assert await found(subject=('"quarterly report"',)) == {alice.id}
    assert await found(subject=("report",)) == {alice.id, bob.id}
    assert await found(not_subject=("q3",), subject=("report",)) == {bob.id}
    # A value without words is in no name: it finds nothing and excludes nothing.
    assert await found(from_=("@",)) == set()
    assert await found(not_from=("@",)) == {alice.id, bob.id}
    # Subject and names are fields of the document: no phrase spans them.
    assert await found(text='"q3 alice"') == set()


async def test_plain_fields_filter(
    sessionmaker: async_sessionmaker[AsyncSession], backend: PostgresBackend, tenant: str
) -> None:
    other_account, other_mailbox, thread = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    plain = _document(body="word")
    unread = _document(body="word", seen=False, received_at=BASE_TIME + timedelta(days=1))
    flagged = _document(body="word", flagged=True, has_attachments=True, thread_id=thread)
    elsewhere = _document(body="word", account_id=other_account, mailbox_id=other_mailbox)
    await _write(sessionmaker, backend, tenant, [plain, unread, flagged, elsewhere])

    async def found(**filters: Any) -> set[uuid.UUID]:
        return set(await _ids(backend, tenant, MessageFilter(text="word", **filters)))

    everything = {plain.id, unread.id, flagged.id, elsewhere.id}
    assert await found() == everything
    assert await found(account_id=other_account) == {elsewhere.id}
    assert await found(mailbox_ids=(INBOX, other_mailbox)) == everything
    assert await found(mailbox_ids=(other_mailbox,)) == {elsewhere.id}
    assert await found(mailbox_ids=()) == set()
    assert await found(thread_id=thread) == {flagged.id}
    assert await found(unread=True) == {unread.id}
    assert await found(unread=False) == everything - {unread.id}
    assert await found(flagged=True) == {flagged.id}
    assert await found(has_attachments=False) == everything - {flagged.id}
    # after: inclusive, before: exclusive.
    later = BASE_TIME + timedelta(days=1)
    assert await found(received_after=later) == {unread.id}
    assert await found(received_before=later) == everything - {unread.id}
    # Without any full-text part the plain fields alone answer.
    assert set(await _ids(backend, tenant, MessageFilter(flagged=True))) == {flagged.id}


@pytest.mark.parametrize("order", ["newest", "oldest", "relevance"])
async def test_pages_are_exact_when_sort_keys_tie(
    sessionmaker: async_sessionmaker[AsyncSession],
    backend: PostgresBackend,
    tenant: str,
    order: Order,
) -> None:
    # Two groups of identical keys: five messages received at one moment, with the same
    # text (the same score), and four at another, with a stronger match.
    earlier = [_document(body="budget") for _ in range(5)]
    later = [
        _document(subject="budget", body="budget", received_at=BASE_TIME + timedelta(hours=1))
        for _ in range(4)
    ]
    await _write(sessionmaker, backend, tenant, [*earlier, *later])

    for limit in (1, 2, 3, 9, 10):
        hits = await _all_pages(
            backend, tenant, MessageFilter(text="budget"), order=order, limit=limit
        )
        ids = [hit.message_id for hit in hits]
        group_of = {
            document.id: index for index, group in enumerate((earlier, later)) for document in group
        }
        if order == "oldest":
            expected = sorted(ids, key=lambda i: (group_of[i], i))
        else:
            expected = sorted(ids, key=lambda i: (group_of[i], i), reverse=True)
        assert ids == expected, limit
        assert set(ids) == set(group_of)


@pytest.mark.parametrize("order", ["newest", "oldest"])
async def test_pages_are_exact_whether_the_walk_or_the_index_finds_them(
    sessionmaker: async_sessionmaker[AsyncSession],
    backend: PostgresBackend,
    tenant: str,
    order: Order,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Walks of three rows, then of at most ten, and matches dense at one end and
    # sparse at the other: pages come from the first walk, from a second one, from
    # the GIN index, and from all of them in one paging.
    monkeypatch.setattr(search_repository, "_WALK_ROWS", 3)
    monkeypatch.setattr(search_repository, "_MAX_WALK_ROWS", 10)
    documents = [
        _document(
            body="budget" if index >= 30 or index % 7 == 0 else "other",
            received_at=BASE_TIME + timedelta(minutes=index // 2),  # pairs tie
        )
        for index in range(40)
    ]
    await _write(sessionmaker, backend, tenant, documents)
    matching = [document for document in documents if document.body == "budget"]
    expected = [
        document.id
        for document in sorted(
            matching, key=lambda d: (d.received_at, d.id), reverse=order == "newest"
        )
    ]
    for limit in (1, 2, 3, 4, 50):
        hits = await _all_pages(
            backend, tenant, MessageFilter(text="budget"), order=order, limit=limit
        )
        assert [hit.message_id for hit in hits] == expected, limit
        assert [hit.key for hit in hits] == [
            next(d.received_at for d in matching if d.id == hit.message_id) for hit in hits
        ]


async def test_relevance_ranks_subject_matches_first(
    sessionmaker: async_sessionmaker[AsyncSession], backend: PostgresBackend, tenant: str
) -> None:
    in_body = _document(body="the budget is late", received_at=BASE_TIME + timedelta(days=1))
    in_subject = _document(subject="Budget", body="see attached")
    await _write(sessionmaker, backend, tenant, [in_body, in_subject])
    page = await backend.search(
        tenant,
        MessageFilter(text="budget"),
        order="relevance",
        after=None,
        limit=10,
    )
    assert [hit.message_id for hit in page.hits] == [in_subject.id, in_body.id]
    scores = [hit.key for hit in page.hits]
    assert all(isinstance(score, float) for score in scores)
    assert scores == sorted(scores, reverse=True)
    assert scores[0] != scores[1]


async def test_a_tenant_never_sees_or_changes_another_tenants_documents(
    sessionmaker: async_sessionmaker[AsyncSession], backend: PostgresBackend, tenant: str
) -> None:
    other = f"{tenant}-b"
    mine, theirs = _document(body="secret"), _document(body="secret")
    await _write(sessionmaker, backend, tenant, [mine])
    await _write(sessionmaker, backend, other, [theirs])

    assert await _ids(backend, tenant, MessageFilter(text="secret")) == [mine.id]
    assert await _ids(backend, other, MessageFilter(text="secret")) == [theirs.id]
    assert await _ids(backend, tenant, MessageFilter(from_=("alice",))) == [mine.id]
    # B removing or rebuilding touches B's documents only, even given A's ids.
    await _write(sessionmaker, backend, other, removed=[mine.id])
    async with sessionmaker.begin() as session:
        await backend.reset(session, other)
    assert await _ids(backend, tenant, MessageFilter(text="secret")) == [mine.id]
    assert await backend.state(tenant) is IndexState.READY
    assert await backend.state(other) is IndexState.BUILDING
    # The same id written by B is B's own row; A's stays as it was.
    await _write(sessionmaker, backend, other, [replace(mine, body="changed")])
    assert await _ids(backend, tenant, MessageFilter(text="secret")) == [mine.id]
    assert await _ids(backend, tenant, MessageFilter(text="changed")) == []


async def test_a_rebuilding_index_refuses_searches_until_it_is_ready(
    sessionmaker: async_sessionmaker[AsyncSession], backend: PostgresBackend, tenant: str
) -> None:
    document = _document(body="invoice")
    await _write(sessionmaker, backend, tenant, [document])
    # A tenant without a state row (a new one) is ready.
    assert await backend.state(tenant) is IndexState.READY

    async with sessionmaker.begin() as session:
        await backend.reset(session, tenant)
    assert await backend.state(tenant) is IndexState.BUILDING
    with pytest.raises(SearchRebuilding) as raised:
        await _ids(backend, tenant, MessageFilter(text="invoice"))
    assert raised.value.tenant_id == tenant

    await _write(sessionmaker, backend, tenant, [document])
    async with sessionmaker.begin() as session:
        await backend.mark_ready(session, tenant)
    assert await backend.state(tenant) is IndexState.READY
    assert await _ids(backend, tenant, MessageFilter(text="invoice")) == [document.id]


async def test_a_rebuilding_index_asks_for_its_rebuild_once_whatever_the_searches(
    sessionmaker: async_sessionmaker[AsyncSession], tenant: str
) -> None:
    asked: list[str] = []

    async def request_rebuild(tenant_id: str) -> None:
        asked.append(tenant_id)

    backend = PostgresBackend(sessionmaker, request_rebuild=request_rebuild)
    async with sessionmaker.begin() as session:
        await backend.reset(session, tenant)
    for _ in range(3):
        with pytest.raises(SearchRebuilding):
            await _ids(backend, tenant, MessageFilter(text="invoice"))
    # One job per tenant would run anyway; the searches do not enqueue it each time.
    assert asked == [tenant]


async def test_an_index_of_an_older_schema_is_missing(
    sessionmaker: async_sessionmaker[AsyncSession], backend: PostgresBackend, tenant: str
) -> None:
    async with sessionmaker.begin() as session:
        await backend.mark_ready(session, tenant)
        await session.execute(
            update(SearchIndexStateRow)
            .where(SearchIndexStateRow.tenant_id == tenant)
            .values(schema_version=SCHEMA_VERSION - 1)
        )
    assert await backend.state(tenant) is IndexState.MISSING
    with pytest.raises(SearchRebuilding):
        await _ids(backend, tenant, MessageFilter(text="anything"))


# The text forms of vectors and queries (no database needed).


def test_vector_fields_are_a_position_apart_with_their_weights() -> None:
    vector = VectorText()
    vector.add(["quarterly", "report"], "A")
    vector.add([])
    vector.add(["report", "it's"], "C")
    assert vector.text() == "'quarterly':1A 'report':2A,4C 'it''s':5C"


def test_vector_positions_stop_at_the_postgresql_limits() -> None:
    vector = VectorText()
    vector.add(["w"] * 300)
    vector.add([f"x{index}" for index in range(17_000)])
    vector.add(["y", "y"])
    entries = dict(entry.split(":") for entry in vector.text().split(" "))
    # A word keeps its first 256 positions.
    assert entries["'w'"] == ",".join(str(position) for position in range(1, 257))
    assert entries["'x0'"] == "302"
    # Past position 16383 every word is stored at 16383, once.
    assert entries["'x16999'"] == "16383"
    assert entries["'y'"] == "16383"


def test_queries_quote_every_word() -> None:
    assert phrase_query(["alice", "acme", "test"]) == "'alice' <-> 'acme' <-> 'test'"
    assert free_text_query(parse_free_text('a OR "b c" -d')) == (
        "(('a') | ('b' <-> 'c')) & (!('d'))"
    )
    # tsquery syntax typed by a user is only words.
    assert free_text_query(parse_free_text("a & !b:* | c")) == "(('a')) & (('b')) & (('c'))"
    assert free_text_query(parse_free_text("!!!")) is None
