"""Fixtures for the console's browser tests.

The browser talks to the run's own app (`app`, the one the API tests use) behind a
real uvicorn (`base_url`). What a deployment's other processes would do for it runs
in-process beside that server, as the sync and webhook tests run it: the arq worker
taking sync jobs, the search indexer (`mirroring`), the IDLE supervisor of the api
process (`idle_watch`, limited to the test's tenant). Operators sign in with API
keys of their tenant made by `create_api_key`, as `mailsvc apikey create` makes them.
"""

from __future__ import annotations

import asyncio
import os
import re
import secrets
import uuid
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from playwright.async_api import Page, expect

from mailsvc.auth.service import create_api_key
from mailsvc.config import Settings
from mailsvc.event.listener import ChangeListener, listen_dsn
from mailsvc.runtime import Runtime
from mailsvc.search.queue_repository import SEARCH_CHANNEL
from mailsvc.sync.engine import SyncEngine
from mailsvc.sync.idle import IdleSupervisor
from mailsvc.sync.tasks import sync_job_function
from tests.fixtures import browser
from tests.fixtures.app import TokenFactory, remember_secret
from tests.fixtures.arq_worker import running_worker
from tests.fixtures.dovecot import MAIL_GID, MAIL_UID, DovecotServer, TestMailUser
from tests.fixtures.idle import SupervisorFactory
from tests.fixtures.mail import register_account
from tests.fixtures.search import indexer_of
from tests.fixtures.smtp_server import SmtpRelay
from tests.webhook.receiver import Receiver

# The shared browser fixtures (tests/fixtures/browser.py), for the tests below.
base_url = browser.base_url
chromium = browser.chromium
pages = browser.pages
page = browser.page
screenshot = browser.screenshot

Headers = dict[str, str]

# How long a console page may take to show what a test waits for.
PAGE_TIMEOUT_MS = 15_000


@dataclass(frozen=True)
class Operator:
    """Someone who signs in to the console with an API key of one tenant."""

    tenant_id: str
    api_key: str
    # The same tenant's bearer token, for arranging and checking through the API.
    auth: Headers


async def make_operator(app: FastAPI, tenant_id: str, auth: Headers) -> Operator:
    """An API key with every scope for `tenant_id` alone, stored as the CLI stores it."""
    state: Runtime = app.state.mailsvc
    async with state.sessionmaker.begin() as session:
        created = await create_api_key(
            session, name=f"operator of {tenant_id}", tenants=[tenant_id]
        )
    return Operator(tenant_id=tenant_id, api_key=created.key, auth=auth)


@pytest.fixture
async def operator_a(app: FastAPI, tenant_id: str, auth: Headers) -> Operator:
    """The operator of the test's own tenant (`tenant_id`, `auth`)."""
    return await make_operator(app, tenant_id, auth)


@pytest.fixture
async def operator_b(app: FastAPI, make_token: TokenFactory) -> Operator:
    """The operator of another tenant, made for this test."""
    tenant = f"t-{secrets.token_hex(5)}"
    return await make_operator(app, tenant, {"Authorization": f"Bearer {make_token(tenant)}"})


def console_path(tenant_id: str, *parts: object) -> str:
    """`/console/<tenant>/<parts...>`."""
    return "/".join(["/console", tenant_id, *(str(part) for part in parts)])


async def submit_login(page: Page, base_url: str, api_key: str) -> None:
    """Fill in and send the sign-in form; the browser is wherever the console sent it."""
    await page.goto(f"{base_url}/console/login")
    await page.locator("form#login input[name=api_key]").fill(api_key)
    async with page.expect_navigation():
        await page.locator("form#login button[type=submit]").click()


async def sign_in(page: Page, base_url: str, operator: Operator) -> None:
    """Sign in through the form; returns on the operator's accounts page."""
    await submit_login(page, base_url, operator.api_key)
    await expect(page).to_have_url(
        f"{base_url}{console_path(operator.tenant_id, 'accounts')}", timeout=PAGE_TIMEOUT_MS
    )


async def signed_out_to_login(page: Page, base_url: str) -> None:
    """Assert the page was sent to the sign-in form."""
    await expect(page).to_have_url(
        re.compile(re.escape(f"{base_url}/console/login") + r"(\?.*)?$"), timeout=PAGE_TIMEOUT_MS
    )
    await expect(page.locator("form#login")).to_be_visible()


# -- mail accounts ----------------------------------------------------------------------


def fill_mailbox(dovecot: DovecotServer, user: TestMailUser, messages: Iterable[bytes]) -> int:
    """Write messages straight into the user's INBOX (Maildir `new/`), as Dovecot's
    delivery would, without a round trip per message; how many were written.

    The file names carry `S=` (size) and `W=` (size with CRLF line ends) like those
    Dovecot writes, so it never reads a file to learn its size.
    """
    home = dovecot.mail_root / user.username
    maildir = home / "Maildir"
    for directory in (home, maildir, maildir / "new", maildir / "cur", maildir / "tmp"):
        directory.mkdir(mode=0o700, exist_ok=True)
        os.chown(directory, MAIL_UID, MAIL_GID)
    count = 0
    for count, raw in enumerate(messages, start=1):
        wire_size = len(raw) + raw.count(b"\n") - raw.count(b"\r\n")
        path = (
            maildir
            / "new"
            / f"1700000000.M{count}P{os.getpid()}.console,S={len(raw)},W={wire_size}"
        )
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(descriptor, raw)
            os.fchown(descriptor, MAIL_UID, MAIL_GID)
        finally:
            os.close(descriptor)
    return count


def plain_message(index: int) -> bytes:
    """A small text message, different for each `index`; made without the `email`
    package, so ten thousand take milliseconds."""
    hour, minute, second = index // 3600 % 24, index // 60 % 60, index % 60
    return (
        f"Message-ID: <console-{index}@example.test>\n"
        f"From: Sender {index % 7} <sender{index % 7}@example.test>\n"
        "To: Recipient <rcpt@example.test>\n"
        f"Subject: Message number {index}\n"
        f"Date: Thu, 01 Jan 2026 {hour:02}:{minute:02}:{second:02} +0000\n"
        "MIME-Version: 1.0\n"
        "Content-Type: text/plain; charset=utf-8\n"
        "\n"
        f"Body of message {index}.\nSecond line.\n"
    ).encode()


@dataclass(frozen=True)
class MailAccount:
    """A registered account of the test Dovecot."""

    account_id: uuid.UUID
    user: TestMailUser


async def new_account(
    client: httpx.AsyncClient,
    auth: Headers,
    dovecot: DovecotServer,
    relay: SmtpRelay,
    *,
    messages: int = 0,
    **overrides: Any,
) -> MailAccount:
    """A fresh Dovecot user whose INBOX holds `messages` messages, registered as an
    account through the API (which queues its first mirror)."""
    user = dovecot.add_user(f"console-{secrets.token_hex(5)}", secrets.token_urlsafe(12))
    if messages:
        await asyncio.to_thread(
            fill_mailbox, dovecot, user, (plain_message(index) for index in range(messages))
        )
    account_id = await register_account(client, auth, dovecot, relay, user, **overrides)
    return MailAccount(account_id, user)


async def schedule_send(
    client: httpx.AsyncClient, operator: Operator, account: MailAccount, *, subject: str
) -> dict[str, Any]:
    """A message sent through the API to go out tomorrow; its outbox entry."""
    tomorrow = datetime.now(UTC) + timedelta(days=1)
    response = await client.post(
        "/api/send",
        json={
            "account_id": str(account.account_id),
            "from": {"name": "Console Test", "address": account.user.email},
            "to": [{"address": "someone@example.test"}],
            "subject": subject,
            "text": "Scheduled for tomorrow.\n",
            "send_at": tomorrow.isoformat(),
        },
        headers=operator.auth,
    )
    assert response.status_code == 202, response.text
    entry: dict[str, Any] = response.json()
    assert entry["status"] == "queued"
    return entry


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    """A webhook receiver on loopback (tests/webhook/receiver.py), answering 200."""
    server = Receiver()
    await server.start()
    yield server
    await server.stop()


async def create_webhook(client: httpx.AsyncClient, operator: Operator, url: str) -> dict[str, Any]:
    """A webhook of the operator's tenant for every event (the caller deletes it)."""
    response = await client.post("/api/webhooks", json={"url": url}, headers=operator.auth)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    remember_secret(created["secret"])
    return created


# -- the work other processes would do ----------------------------------------------------


@pytest.fixture
async def mirroring(app: FastAPI, engine: SyncEngine, settings: Settings) -> AsyncIterator[None]:
    """A `mailsvc worker`'s part of a first mirror, running until the test ends: sync
    jobs taken from the queue as they come, and the search indexer."""
    state: Runtime = app.state.mailsvc
    listener = ChangeListener(listen_dsn(settings.async_database_url), channel=SEARCH_CHANNEL)
    indexer = indexer_of(app, owner_id=f"console-{secrets.token_hex(3)}")
    listener.start()
    indexer.start()
    try:
        async with running_worker(
            app,
            [sync_job_function()],
            {"sync_engine": engine, "sessionmaker": state.sessionmaker},
        ):
            yield
    finally:
        await indexer.stop()
        await listener.stop()


@pytest.fixture
async def idle_watch(supervisors: SupervisorFactory) -> IdleSupervisor:
    """The api process's IDLE supervisor, for the test's tenant only, with a lease and
    scan interval of seconds (the run's app has IDLE off)."""
    return supervisors()
