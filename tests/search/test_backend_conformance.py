"""Search conformance of each search backend by itself: every case of
`conformance.CASES` through `backend.search` (backend_conformance.py), in every order.

The same table as test_conformance.py, without IMAP, sync or HTTP in between, so a
backend's own answers are checked; a case whose `known_differences` names the backend
xfails strictly.
"""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from mailsvc.kit.db import create_engine, create_sessionmaker
from mailsvc.search.backend import SearchBackend
from mailsvc.search.postgres import PostgresBackend
from mailsvc.search.tantivy import TantivyBackend
from tests.search.backend_conformance import (
    MAILBOX_IDS,
    MESSAGE_IDS,
    index_mailbox,
    message_filter,
    search_keys,
)
from tests.search.conformance import CASES, MAILBOX, PROBE_WORD, Case

BACKENDS = ["tantivy", "postgres"]


@dataclass(frozen=True, slots=True)
class IndexedMailbox:
    """The conformance mailbox indexed by one backend."""

    backend_name: str
    backend: SearchBackend
    tenant_id: str


async def _no_rebuild(tenant_id: str) -> None:
    raise AssertionError(f"the conformance index of {tenant_id} was asked to rebuild")


@contextlib.asynccontextmanager
async def _postgres_backend(database_url: str, tenant_id: str) -> AsyncIterator[PostgresBackend]:
    """The PostgreSQL backend on the run's database (an engine of its own), with the
    mailbox indexed in one transaction, as the indexer's rebuild writes a batch."""
    engine = create_engine(database_url, pool_size=2)
    sessionmaker = create_sessionmaker(engine)
    try:
        backend = PostgresBackend(sessionmaker)
        async with sessionmaker.begin() as session:
            await index_mailbox(backend, session, tenant_id)
        yield backend
    finally:
        await engine.dispose()


@pytest.fixture(scope="module", params=BACKENDS)
async def indexed_mailbox(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, database_url: str
) -> AsyncIterator[IndexedMailbox]:
    """`conformance.MAILBOX` in a fresh tenant's index of the backend under test."""
    name = str(request.param)
    tenant_id = f"t-{secrets.token_hex(5)}"
    if name == "postgres":
        async with _postgres_backend(database_url, tenant_id) as postgres:
            yield IndexedMailbox(name, postgres, tenant_id)
        return
    assert name == "tantivy", name
    backend = TantivyBackend(tmp_path_factory.mktemp("search"), request_rebuild=_no_rebuild)
    # The Tantivy index lives on disk, outside PostgreSQL: a session that is connected
    # to nothing shows that the backend never uses it.
    await index_mailbox(backend, AsyncSession(), tenant_id)
    yield IndexedMailbox(name, backend, tenant_id)
    await backend.aclose()


def test_the_harness_maps_every_record() -> None:
    assert len(MESSAGE_IDS) == len(MAILBOX)
    assert {record.mailbox for record in MAILBOX} <= set(MAILBOX_IDS)


async def test_the_probe_word_finds_the_whole_mailbox(indexed_mailbox: IndexedMailbox) -> None:
    keys = await search_keys(
        indexed_mailbox.backend,
        indexed_mailbox.tenant_id,
        message_filter(PROBE_WORD),
        order="newest",
    )
    assert sorted(keys) == sorted(MESSAGE_IDS)


@pytest.mark.parametrize("case", CASES, ids=[case.query for case in CASES])
async def test_search_returns_exactly_the_documented_messages(
    request: pytest.FixtureRequest, indexed_mailbox: IndexedMailbox, case: Case
) -> None:
    reason = case.known_differences.get(indexed_mailbox.backend_name)
    if reason is not None:
        request.applymarker(pytest.mark.xfail(strict=True, reason=reason))
    backend, tenant_id = indexed_mailbox.backend, indexed_mailbox.tenant_id
    filters = message_filter(case.query)

    newest = await search_keys(backend, tenant_id, filters, order="newest")
    assert set(newest) == case.expected, case.why
    received = {record.key: record.received for record in MAILBOX}
    assert [received[key] for key in newest] == sorted(
        (received[key] for key in newest), reverse=True
    )
    oldest = await search_keys(backend, tenant_id, filters, order="oldest")
    assert oldest == newest[::-1]
    if filters.text:  # the message service ranks free text only
        relevance = await search_keys(backend, tenant_id, filters, order="relevance")
        assert sorted(relevance) == sorted(newest)
