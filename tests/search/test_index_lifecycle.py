"""A search index's life as users see it through the API, on real servers.

- Freshness, on both backends: an expunge, a move and a flag change on the IMAP
  server reach search results through the real pipeline (sync, triggers, NOTIFY, the
  worker's indexer running as a task, the api's reader). How fast is measured by
  bench/freshness.py; here, that it happens.
- Lost or foreign index files (Tantivy): a deleted directory, garbage in a segment,
  and another tenant's index copied over this one's. Each answers 503
  `search_rebuilding` for that tenant only, never another tenant's message, queues the
  rebuild job, and searches answer again after the job ran, without a restart.
"""

from __future__ import annotations

import asyncio
import secrets
import shutil
import uuid
from email.message import EmailMessage
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from mailsvc.account.logins import AccountLogins
from mailsvc.config import Settings
from mailsvc.event.listener import ChangeListener, listen_dsn
from mailsvc.runtime import Runtime
from mailsvc.search.queue_repository import SEARCH_CHANNEL
from mailsvc.search.rebuild import rebuild_job_id, rebuild_search_index
from mailsvc.search.tantivy.store import IndexStore
from mailsvc.sync.engine import SyncEngine
from tests.fixtures import imap_client
from tests.fixtures.app import TokenFactory
from tests.fixtures.dovecot import DovecotServer, TestMailUser
from tests.fixtures.mail import register_account
from tests.fixtures.search import app_with_backend, indexer_of, make_searchable
from tests.fixtures.smtp_server import SmtpRelay
from tests.fixtures.waiting import eventually
from tests.ops.test_metrics import grew, scrape

Headers = dict[str, str]

# A wait, not a timing assertion: the 2 s freshness target is bench/freshness.py's.
CONVERGE_SECONDS = 15.0


class Mailbox:
    """A tenant with one synced account on its own Dovecot user."""

    def __init__(self, tenant_id: str, auth: Headers, user: TestMailUser) -> None:
        self.tenant_id = tenant_id
        self.auth = auth
        self.user = user


def _message(subject: str, body: str) -> bytes:
    message = EmailMessage()
    message["From"] = "Fresh Sender <fresh@example.test>"
    message["To"] = "owner@example.test"
    message["Subject"] = subject
    message["Message-ID"] = f"<{uuid.uuid4().hex}@example.test>"
    message.set_content(body)
    return message.as_bytes()


async def _mailbox(
    app: FastAPI,
    settings: Settings,
    parser_pool: object,
    dovecot: DovecotServer,
    smtp_relay: SmtpRelay,
    make_token: TokenFactory,
    messages: list[bytes],
) -> Mailbox:
    """A new tenant whose account holds `messages` in INBOX, synced and indexed."""
    tenant_id = f"t-{secrets.token_hex(5)}"
    auth = {"Authorization": f"Bearer {make_token(tenant_id)}"}
    user = dovecot.add_user(f"life-{secrets.token_hex(6)}", secrets.token_urlsafe(12))
    await asyncio.to_thread(imap_client.append, dovecot, user, "INBOX", messages)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://mailsvc.test") as client:
        account_id = await register_account(client, auth, dovecot, smtp_relay, user)
    await _sync(app, settings, parser_pool, tenant_id, account_id)
    await make_searchable(app, tenant_id)
    return Mailbox(tenant_id, auth, user)


async def _sync(
    app: FastAPI, settings: Settings, parser_pool: object, tenant_id: str, account_id: uuid.UUID
) -> None:
    state: Runtime = app.state.mailsvc
    engine = SyncEngine(
        sessionmaker=state.sessionmaker,
        logins=state.component(AccountLogins),
        settings=settings,
        parser=parser_pool,  # type: ignore[arg-type]
    )
    await engine.sync_account(tenant_id, account_id)


async def _account_id(client: httpx.AsyncClient, auth: Headers) -> uuid.UUID:
    response = await client.get("/api/accounts", headers=auth)
    assert response.status_code == 200, response.text
    return uuid.UUID(response.json()["items"][0]["id"])


async def _subjects(client: httpx.AsyncClient, auth: Headers, q: str) -> list[str]:
    response = await client.get("/api/messages", params={"q": q}, headers=auth)
    assert response.status_code == 200, response.text
    return sorted(item["subject"] for item in response.json()["items"])


async def _converges(client: httpx.AsyncClient, auth: Headers, q: str, expected: list[str]) -> None:
    async def shown() -> bool:
        return await _subjects(client, auth, q) == expected

    await eventually(shown, within=CONVERGE_SECONDS, what=f"{q!r} finding {expected}")


# `client` drops, when the test ends, the sync job that registering the account queued.
@pytest.mark.usefixtures("client")
@pytest.mark.parametrize("backend", ["tantivy", "postgres"])
async def test_expunge_move_and_flags_reach_search(
    backend: str,
    app: FastAPI,
    settings: Settings,
    parser_pool: object,
    dovecot: DovecotServer,
    smtp_relay: SmtpRelay,
    make_token: TokenFactory,
) -> None:
    async with app_with_backend(app, settings, backend) as serving:
        word = f"zqx{secrets.token_hex(4)}"
        box = await _mailbox(
            serving,
            settings,
            parser_pool,
            dovecot,
            smtp_relay,
            make_token,
            [_message(f"{subject} {word}", f"Body of {subject}.") for subject in ("one", "two")],
        )
        transport = httpx.ASGITransport(app=serving)
        async with (
            httpx.AsyncClient(transport=transport, base_url="http://mailsvc.test") as client,
            _indexing(serving, settings),
        ):
            assert await _subjects(client, box.auth, word) == [f"one {word}", f"two {word}"]
            account_id = await _account_id(client, box.auth)
            await asyncio.to_thread(
                imap_client.run,
                dovecot,
                box.user,
                "INBOX",
                ("STORE", "1", "+FLAGS", "(\\Deleted)"),
                ("MOVE", "2", "Archive"),
            )
            await _sync(serving, settings, parser_pool, box.tenant_id, account_id)
            await _converges(client, box.auth, word, [f"two {word}"])
            await _converges(client, box.auth, f"in:archive {word}", [f"two {word}"])
            await _converges(client, box.auth, f"in:inbox {word}", [])

            await asyncio.to_thread(
                imap_client.run,
                dovecot,
                box.user,
                "Archive",
                ("STORE", "1:*", "+FLAGS", "(\\Flagged)"),
            )
            await _sync(serving, settings, parser_pool, box.tenant_id, account_id)
            await _converges(client, box.auth, f"is:starred {word}", [f"two {word}"])


class _indexing:
    """The worker's indexer running beside `app` while the block runs."""

    def __init__(self, app: FastAPI, settings: Settings) -> None:
        self._app = app
        self._listener = ChangeListener(
            listen_dsn(settings.async_database_url), channel=SEARCH_CHANNEL
        )
        self._indexer = indexer_of(app, owner_id=f"live-{secrets.token_hex(3)}")

    async def __aenter__(self) -> None:
        self._listener.start()
        self._indexer.start()

    async def __aexit__(self, *_: object) -> None:
        await self._indexer.stop()
        await self._listener.stop()


@pytest.fixture
async def two_tenants(
    app: FastAPI,
    settings: Settings,
    parser_pool: object,
    dovecot: DovecotServer,
    smtp_relay: SmtpRelay,
    make_token: TokenFactory,
) -> tuple[Mailbox, Mailbox]:
    """Tenants A and B on the run's (Tantivy) app, each with one indexed message."""
    assert settings.search_backend == "tantivy"
    a = await _mailbox(
        app, settings, parser_pool, dovecot, smtp_relay, make_token,
        [_message("alpha zqxalpha", "Tenant A's own message.")],
    )  # fmt: skip
    b = await _mailbox(
        app, settings, parser_pool, dovecot, smtp_relay, make_token,
        [_message("bravo zqxbravo", "Tenant B's own message.")],
    )  # fmt: skip
    return a, b


def _index_directory(settings: Settings, tenant_id: str) -> Path:
    return IndexStore(settings.search_index_path).directory(tenant_id)


def _corrupt_a_segment(directory: Path) -> None:
    segments = [p for p in directory.iterdir() if p.suffix in {".idx", ".pos", ".term", ".store"}]
    assert segments, sorted(p.name for p in directory.iterdir())
    for segment in segments:
        size = segment.stat().st_size
        segment.write_bytes(secrets.token_bytes(max(size, 64)))


async def _rebuild_as_the_worker(app: FastAPI, tenant_id: str) -> None:
    """What a worker does with the queued job: `rebuild_search_index`, then the drain."""
    runtime: Runtime = app.state.mailsvc
    assert await runtime.redis.exists(f"arq:job:{rebuild_job_id(tenant_id)}"), "job not queued"
    await rebuild_search_index({"search_indexer": indexer_of(app)}, tenant_id)


@pytest.mark.parametrize("damage", ["deleted", "garbage", "another_tenants"])
async def test_a_damaged_index_answers_503_for_its_tenant_and_is_rebuilt(
    damage: str,
    app: FastAPI,
    settings: Settings,
    client: httpx.AsyncClient,
    two_tenants: tuple[Mailbox, Mailbox],
) -> None:
    a, b = two_tenants
    directory = _index_directory(settings, a.tenant_id)
    if damage == "deleted":
        shutil.rmtree(directory)
    elif damage == "garbage":
        _corrupt_a_segment(directory)
    else:
        shutil.rmtree(directory)
        shutil.copytree(_index_directory(settings, b.tenant_id), directory)

    before = await scrape(client)
    for q in ("zqxalpha", "zqxbravo", "bravo"):
        response = await client.get("/api/messages", params={"q": q}, headers=a.auth)
        # Never B's message, whatever A's directory holds now.
        assert response.status_code == 503, response.text
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["code"] == "search_rebuilding"
        assert int(response.headers["retry-after"]) > 0
    # Counted as unavailable, not as requests the client got wrong.
    after = await scrape(client)
    assert grew(before, after, "mailsvc_search_requests_total", outcome="unavailable") == 3
    assert grew(before, after, "mailsvc_search_requests_total", outcome="invalid") == 0
    # Lists and reads of A go on; B's searches are not affected.
    listing = await client.get("/api/messages", headers=a.auth)
    assert [item["subject"] for item in listing.json()["items"]] == ["alpha zqxalpha"]
    assert await _subjects(client, b.auth, "zqxbravo") == ["bravo zqxbravo"]

    await _rebuild_as_the_worker(app, a.tenant_id)

    assert await _subjects(client, a.auth, "zqxalpha") == ["alpha zqxalpha"]
    assert await _subjects(client, a.auth, "zqxbravo") == []
    assert await _subjects(client, b.auth, "zqxbravo") == ["bravo zqxbravo"]
