"""Search conformance: every case of `conformance.CASES` against every search backend.

The mailbox of `conformance.MAILBOX` is stored on the test Dovecot with its receive
times and flags (IMAP APPEND), synced by the engine like any account, indexed by the
worker's indexer into the backend under test, and searched through
`GET /api/messages?q=` of an app running that backend, paging to the end. A backend
passes when each search returns exactly the documented messages; a case it is known
to get wrong xfails strictly, so fixing the backend turns the xfail into a failure to
clean up.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import format_datetime

import httpx
import pytest
from fastapi import FastAPI

from mailsvc.account.logins import AccountLogins
from mailsvc.config import Settings
from mailsvc.runtime import Runtime
from mailsvc.sync.engine import SyncEngine
from mailsvc.sync.parser import ParserPool
from tests.fixtures import imap_client
from tests.fixtures.app import TokenFactory
from tests.fixtures.dovecot import DovecotServer, TestMailUser
from tests.fixtures.mail import register_account
from tests.fixtures.search import app_with_backend, make_searchable
from tests.fixtures.smtp_server import SmtpRelay
from tests.search.conformance import (
    CASES,
    CUSTOM_MAILBOXES,
    MAILBOX,
    PROBE_WORD,
    Case,
    MailRecord,
)

Headers = dict[str, str]

BACKENDS = ["tantivy", "postgres"]

SEARCHABLE_TIMEOUT_SECONDS = 30.0
PAGE_SIZE = 10  # small, so that most searches page at least once


@dataclass(frozen=True, slots=True)
class ConformanceMailbox:
    """The synced mailbox of one backend: how to reach it, and its ids as keys."""

    auth: Headers
    keys: dict[str, str]
    """API message id -> `MailRecord.key`."""


def test_the_cases_name_only_messages_of_the_mailbox() -> None:
    keys = [record.key for record in MAILBOX]
    assert len(set(keys)) == len(keys), "message keys must be unique"
    for case in CASES:
        assert case.expected <= set(keys), case.query
        assert set(case.known_differences) <= set(BACKENDS), case.query
    queries = [case.query for case in CASES]
    assert len(set(queries)) == len(queries), "queries must be unique"


@pytest.fixture(scope="module", params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """The search backend under test."""
    return str(request.param)


@pytest.fixture(scope="module")
async def backend_app(backend: str, app: FastAPI, settings: Settings) -> AsyncIterator[FastAPI]:
    """An api app answering searches from `backend`."""
    async with app_with_backend(app, settings, backend) as serving:
        yield serving


@pytest.fixture
async def backend_client(backend_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=backend_app)
    async with httpx.AsyncClient(transport=transport, base_url="http://mailsvc.test") as http:
        yield http


@pytest.fixture(scope="module")
async def conformance_mailbox(
    backend_app: FastAPI,
    settings: Settings,
    parser_pool: ParserPool,
    dovecot: DovecotServer,
    smtp_relay: SmtpRelay,
    make_token: TokenFactory,
) -> ConformanceMailbox:
    """`MAILBOX` in a fresh Dovecot user and tenant, synced, searchable, keyed."""
    tenant_id = f"t-{secrets.token_hex(5)}"
    # Outlives the default ten minutes: the whole module shares this mailbox.
    auth = {"Authorization": f"Bearer {make_token(tenant_id, expires_in=3600)}"}
    user = dovecot.add_user(f"conformance-{secrets.token_hex(6)}", secrets.token_urlsafe(12))
    await asyncio.to_thread(_store_on_server, dovecot, user)
    transport = httpx.ASGITransport(app=backend_app)
    async with httpx.AsyncClient(transport=transport, base_url="http://mailsvc.test") as client:
        account_id = await register_account(client, auth, dovecot, smtp_relay, user)
        # Registering queues a sync job too; the per-test `client` fixture drops
        # queued jobs when the first test ends. The sync runs here, in-process.
        state: Runtime = backend_app.state.mailsvc
        engine = SyncEngine(
            sessionmaker=state.sessionmaker,
            logins=state.component(AccountLogins),
            settings=settings,
            parser=parser_pool,
        )
        await engine.sync_account(tenant_id, account_id)
        await make_searchable(backend_app, tenant_id)
        ids = await _wait_until_searchable(client, auth)
        keys = {message_id: await _key_of(client, auth, message_id) for message_id in ids}
    return ConformanceMailbox(auth=auth, keys=keys)


@pytest.mark.parametrize("case", CASES, ids=[case.query for case in CASES])
async def test_search_returns_exactly_the_documented_messages(
    request: pytest.FixtureRequest,
    backend: str,
    conformance_mailbox: ConformanceMailbox,
    backend_client: httpx.AsyncClient,
    case: Case,
) -> None:
    reason = case.known_differences.get(backend)
    if reason is not None:
        request.applymarker(pytest.mark.xfail(strict=True, reason=reason))
    found = await _search(backend_client, conformance_mailbox.auth, case.query)
    keys = {conformance_mailbox.keys.get(message_id, message_id) for message_id in found}
    assert keys == case.expected, case.why


def _email(record: MailRecord) -> bytes:
    message = EmailMessage()
    message["Message-ID"] = f"<{record.message_id}>"
    message["Date"] = format_datetime(record.date_header or record.received)
    message["From"] = record.sender
    message["To"] = record.to
    if record.cc:
        message["Cc"] = record.cc
    if record.bcc:
        message["Bcc"] = record.bcc
    if record.reply_to:
        message["Reply-To"] = record.reply_to
    message["Subject"] = record.subject
    message.set_content(f"{record.body}\n\n{PROBE_WORD}\n")
    if record.attachment:
        message.add_attachment(
            b"%PDF-1.4\n", maintype="application", subtype="pdf", filename=f"{record.key}.pdf"
        )
    return message.as_bytes()


def _flags(record: MailRecord) -> str:
    flags = [] if record.unread else ["\\Seen"]
    if record.starred:
        flags.append("\\Flagged")
    if record.mailbox == "Drafts":
        flags.append("\\Draft")
    return " ".join(flags)


def _store_on_server(dovecot: DovecotServer, user: TestMailUser) -> None:
    """APPEND every record to its mailbox with its flags and receive time (blocking)."""
    for mailbox in CUSTOM_MAILBOXES:
        imap_client.run_plain(dovecot, user, "CREATE", mailbox)
    for record in MAILBOX:
        imap_client.append(
            dovecot,
            user,
            record.mailbox,
            [_email(record)],
            flags=_flags(record),
            received=[record.received],
        )


async def _search(client: httpx.AsyncClient, auth: Headers, q: str) -> list[str]:
    """The ids of every message the search returns, page after page."""
    ids: list[str] = []
    cursor: str | None = None
    while True:
        params = {"q": q, "limit": str(PAGE_SIZE)} | ({"cursor": cursor} if cursor else {})
        response = await client.get("/api/messages", params=params, headers=auth)
        assert response.status_code == 200, response.text
        page = response.json()
        ids += [item["id"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert len(set(ids)) == len(ids), f"{q!r} returned a message twice"
    return ids


async def _wait_until_searchable(client: httpx.AsyncClient, auth: Headers) -> list[str]:
    """The ids of the whole mailbox, once a search finds every message."""
    deadline = time.monotonic() + SEARCHABLE_TIMEOUT_SECONDS
    while True:
        ids = await _search(client, auth, PROBE_WORD)
        if len(ids) == len(MAILBOX):
            return ids
        assert time.monotonic() < deadline, f"{len(ids)} of {len(MAILBOX)} messages searchable"
        await asyncio.sleep(0.2)


async def _key_of(client: httpx.AsyncClient, auth: Headers, message_id: str) -> str:
    response = await client.get(f"/api/messages/{message_id}", headers=auth)
    assert response.status_code == 200, response.text
    header = response.json()["message_id"]
    key, _, _ = header.partition("@")
    return str(key)
