"""A message delivered while the account page is open shows up in its events list as
it happens: Dovecot's IDLE push, a sync, the change feed, Server-Sent Events, htmx."""

from __future__ import annotations

import secrets
from email.message import EmailMessage

import httpx
import pytest
from playwright.async_api import Frame, Locator, Page, expect

from mailsvc.console import account_detail
from mailsvc.sync.idle import IdleSupervisor
from tests.console.conftest import (
    MailAccount,
    Operator,
    console_path,
    new_account,
    sign_in,
)
from tests.fixtures.browser import Screenshot, needs_chromium
from tests.fixtures.dovecot import DovecotServer
from tests.fixtures.smtp_server import SmtpRelay
from tests.fixtures.waiting import eventually

pytestmark = needs_chromium

# From the delivery to the row: Dovecot's ~0.5 s push, a sync pass, the feed, the stream.
LIVE_WITHIN_MS = 15_000


def _message(subject: str) -> bytes:
    message = EmailMessage()
    message["From"] = "Sender <sender@example.test>"
    message["To"] = "Recipient <rcpt@example.test>"
    message["Subject"] = subject
    message["Message-ID"] = f"<{secrets.token_hex(8)}@example.test>"
    message.set_content("Delivered while the console was watching.\n")
    return message.as_bytes()


async def _watched_account(
    client: httpx.AsyncClient, operator: Operator, dovecot: DovecotServer, relay: SmtpRelay
) -> MailAccount:
    """A new account with three messages, mirrored and watched over IDLE."""
    account = await new_account(client, operator.auth, dovecot, relay, messages=3)
    status_url = f"/api/sync/status/{account.account_id}"

    async def watched() -> bool:
        status = (await client.get(status_url, headers=operator.auth)).json()
        return bool(status["state"] == "connected" and status["idle"]["connected"])

    await eventually(watched, within=60, what="first mirror done and IDLE connected")
    return account


async def _event_types(rows: Locator) -> list[str]:
    return [str(await row.get_attribute("data-event-type")) for row in await rows.all()]


async def test_a_delivered_message_appears_in_the_events_without_a_reload(
    base_url: str,
    page: Page,
    screenshot: Screenshot,
    operator_a: Operator,
    client: httpx.AsyncClient,
    dovecot: DovecotServer,
    smtp_relay: SmtpRelay,
    mirroring: None,
    idle_watch: IdleSupervisor,
) -> None:
    account = await _watched_account(client, operator_a, dovecot, smtp_relay)

    await sign_in(page, base_url, operator_a)
    async with page.expect_response(
        lambda response: response.request.resource_type == "eventsource"
    ) as stream:
        await page.goto(
            f"{base_url}{console_path(operator_a.tenant_id, 'accounts', account.account_id)}"
        )
    assert (await stream.value).status == 200
    await expect(page.locator('#mailboxes tr[data-mailbox="INBOX"]')).to_be_visible()
    created = page.locator('#events tr[data-event-type="message.created"]')
    await expect(created).to_have_count(0)
    rows = page.locator("#events tr[data-event-type]")
    before = await _event_types(rows)

    navigations: list[str] = []

    def navigated(frame: Frame) -> None:
        if frame == page.main_frame:
            navigations.append(frame.url)

    page.on("framenavigated", navigated)
    await page.evaluate("window.mailsvcTestMark = 'still the same page'")

    await dovecot.adeliver(account.user.username, _message("Live in the console"))

    await expect(created).to_have_count(1, timeout=LIVE_WITHIN_MS)
    # Newest first: the new rows sit above the ones the page was rendered with.
    after = await _event_types(rows)
    assert after.index("message.created") < len(after) - len(before), (before, after)
    assert navigations == []
    assert await page.evaluate("window.mailsvcTestMark") == "still the same page"
    await screenshot(page, "account")


async def test_the_live_list_keeps_only_the_newest_rows(
    base_url: str,
    page: Page,
    operator_a: Operator,
    client: httpx.AsyncClient,
    dovecot: DovecotServer,
    smtp_relay: SmtpRelay,
    mirroring: None,
    idle_watch: IdleSupervisor,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A page left open for days must not grow without end (static/console.js).
    monkeypatch.setattr(account_detail, "KEEP_EVENTS", 3)
    account = await _watched_account(client, operator_a, dovecot, smtp_relay)
    await sign_in(page, base_url, operator_a)
    await page.goto(
        f"{base_url}{console_path(operator_a.tenant_id, 'accounts', account.account_id)}"
    )
    rows = page.locator("#events tr[data-event-type]")
    await expect(rows.first).to_be_visible()
    assert await rows.count() > 3  # as rendered: the last RECENT_EVENTS

    await dovecot.adeliver(account.user.username, _message("One more"))
    created = page.locator('#events tr[data-event-type="message.created"]')
    await expect(created).to_have_count(1, timeout=LIVE_WITHIN_MS)
    await expect(rows).to_have_count(3)
