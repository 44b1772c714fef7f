"""The accounts page follows an account's first mirror as it happens, without a reload."""

from __future__ import annotations

import asyncio
import itertools
import time
from dataclasses import dataclass

import httpx
from playwright.async_api import Frame, Page, expect

from tests.console.conftest import PAGE_TIMEOUT_MS, Operator, new_account, sign_in
from tests.fixtures.browser import Screenshot, needs_chromium
from tests.fixtures.dovecot import DovecotServer
from tests.fixtures.smtp_server import SmtpRelay

pytestmark = needs_chromium

# Enough mail that the mirror takes several of the table's 2 s refreshes on these
# machines (~1,000 small messages a second stored, then indexed).
MESSAGES = 10_000
MIRROR_WITHIN_SECONDS = 120
READ_EVERY_SECONDS = 0.2

# One read of the row's progress bar, as the page shows it at that moment.
_READ_PROGRESS = """(accountId) => {
  const bar = document.querySelector(
    `tr[data-account-id="${accountId}"] progress[data-field=mirror]`);
  return bar && [bar.dataset.synced, bar.dataset.indexed, bar.dataset.total];
}"""


@dataclass(frozen=True)
class Reading:
    synced: int
    indexed: int
    total: int

    @property
    def complete(self) -> bool:
        return self.total > 0 and self.synced == self.indexed == self.total


async def _read(page: Page, account_id: str) -> Reading | None:
    values = await page.evaluate(_READ_PROGRESS, account_id)
    if values is None:
        return None
    synced, indexed, total = (int(value) for value in values)
    return Reading(synced, indexed, total)


async def test_the_accounts_page_shows_a_first_mirror_progress_until_it_is_complete(
    base_url: str,
    page: Page,
    screenshot: Screenshot,
    operator_a: Operator,
    client: httpx.AsyncClient,
    dovecot: DovecotServer,
    smtp_relay: SmtpRelay,
    mirroring: None,
) -> None:
    await sign_in(page, base_url, operator_a)
    navigations: list[str] = []

    def navigated(frame: Frame) -> None:
        if frame == page.main_frame:
            navigations.append(frame.url)

    page.on("framenavigated", navigated)
    created = await new_account(client, operator_a.auth, dovecot, smtp_relay, messages=MESSAGES)
    account = str(created.account_id)

    readings: list[Reading] = []
    started = time.monotonic()
    while not (readings and readings[-1].complete):
        waited = time.monotonic() - started
        assert waited < MIRROR_WITHIN_SECONDS, f"not complete in {waited:.0f} s: {readings[-5:]}"
        reading = await _read(page, account)
        if reading is not None and (not readings or reading != readings[-1]):
            readings.append(reading)
        await asyncio.sleep(READ_EVERY_SECONDS)

    for earlier, later in itertools.pairwise(readings):
        assert later.synced >= earlier.synced, readings
        assert later.indexed >= earlier.indexed, readings
        assert later.total >= earlier.total, readings
    assert any(0 < r.total and r.synced < r.total for r in readings), readings
    assert readings[-1] == Reading(MESSAGES, MESSAGES, MESSAGES)
    assert navigations == [], "the table refreshes itself, the page is never reloaded"

    row = page.locator(f'tr[data-account-id="{account}"]')
    await expect(row.locator("[data-field=state]")).to_have_text(
        "connected", timeout=PAGE_TIMEOUT_MS
    )
    await expect(row.locator("[data-field=mirror-text]")).not_to_be_empty()
    await screenshot(page, "accounts")
