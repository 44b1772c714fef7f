"""Cancelling a scheduled send from the console's outbox page."""

from __future__ import annotations

import re

import httpx
from playwright.async_api import Page, expect

from tests.console.conftest import (
    PAGE_TIMEOUT_MS,
    Operator,
    console_path,
    new_account,
    schedule_send,
    sign_in,
)
from tests.fixtures.browser import Screenshot, needs_chromium
from tests.fixtures.dovecot import DovecotServer
from tests.fixtures.smtp_server import SmtpRelay

pytestmark = needs_chromium


async def test_a_scheduled_send_is_cancelled_from_the_outbox_page(
    base_url: str,
    page: Page,
    screenshot: Screenshot,
    operator_a: Operator,
    client: httpx.AsyncClient,
    dovecot: DovecotServer,
    smtp_relay: SmtpRelay,
) -> None:
    account = await new_account(client, operator_a.auth, dovecot, smtp_relay)
    kept = await schedule_send(client, operator_a, account, subject="Stays scheduled")
    doomed = await schedule_send(client, operator_a, account, subject="Cancelled tomorrow's send")

    await sign_in(page, base_url, operator_a)
    outbox_url = f"{base_url}{console_path(operator_a.tenant_id, 'outbox')}"
    await page.goto(outbox_url)
    row = page.locator(f'tr[data-outbox-id="{doomed["id"]}"]')
    await expect(row.locator("[data-field=status]")).to_have_text(re.compile(r"\bqueued\b"))
    await screenshot(page, "outbox")

    async with page.expect_navigation():
        await row.locator("button[value=cancel]").click()
    await expect(page).to_have_url(outbox_url, timeout=PAGE_TIMEOUT_MS)
    await expect(row.locator("[data-field=status]")).to_have_text(re.compile(r"\bcancelled\b"))
    await expect(row.locator("button[value=cancel]")).to_have_count(0)
    await expect(page.locator(".flash.error")).to_have_count(0)

    entry = await client.get(f"/api/outbox/{doomed['id']}", headers=operator_a.auth)
    assert entry.json()["status"] == "cancelled"
    other = await client.get(f"/api/outbox/{kept['id']}", headers=operator_a.auth)
    assert other.json()["status"] == "queued"
    kept_row = page.locator(f'tr[data-outbox-id="{kept["id"]}"]')
    await expect(kept_row.locator("[data-field=status]")).to_have_text(re.compile(r"\bqueued\b"))
