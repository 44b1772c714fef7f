"""Signing in to the console with an API key and out again, in a real browser."""

from __future__ import annotations

import secrets
import uuid

from playwright.async_api import Page, expect

from tests.console.conftest import (
    Operator,
    console_path,
    sign_in,
    signed_out_to_login,
    submit_login,
)
from tests.fixtures.browser import BrowserPages, Screenshot, needs_chromium

pytestmark = needs_chromium

SECTIONS = ("accounts", "outbox", "webhooks", "keys")


async def test_a_wrong_key_is_refused_and_the_right_one_opens_the_accounts_page(
    base_url: str, page: Page, pages: BrowserPages, screenshot: Screenshot, operator_a: Operator
) -> None:
    await page.goto(f"{base_url}/console/login")
    await expect(page.locator("form#login input[name=api_key]")).to_be_visible()
    await screenshot(page, "login")

    # The refusal may come with a 4xx status, which Chromium notes in the console.
    pages.allow_error(r"the server responded with a status of 40[013]")
    await submit_login(page, base_url, "msk_" + secrets.token_urlsafe(32))
    await expect(page.locator(".flash.error")).to_be_visible()
    await expect(page.locator("form#login")).to_be_visible()
    assert console_path(operator_a.tenant_id) not in page.url

    await sign_in(page, base_url, operator_a)
    for section in SECTIONS:
        link = page.locator(f'nav a[href$="{console_path(operator_a.tenant_id, section)}"]')
        await expect(link.first).to_be_visible()
    switcher = page.locator("a.tenant[data-tenant]")
    await expect(switcher).to_have_count(1)
    assert await switcher.get_attribute("data-tenant") == operator_a.tenant_id
    await expect(page.locator("form#logout button")).to_be_visible()


async def test_signing_out_ends_the_session(
    base_url: str, page: Page, operator_a: Operator
) -> None:
    await sign_in(page, base_url, operator_a)
    await page.goto(f"{base_url}{console_path(operator_a.tenant_id, 'keys')}")
    async with page.expect_navigation():
        await page.locator("form#logout button").click()
    await signed_out_to_login(page, base_url)

    await page.goto(f"{base_url}{console_path(operator_a.tenant_id, 'accounts')}")
    await signed_out_to_login(page, base_url)


async def test_every_page_sends_a_browser_without_a_session_to_the_sign_in_form(
    base_url: str, page: Page, operator_a: Operator
) -> None:
    tenant = operator_a.tenant_id
    somebody = uuid.uuid4()
    for path in (
        "/console",
        *(console_path(tenant, section) for section in SECTIONS),
        console_path(tenant, "accounts", somebody),
        console_path(tenant, "webhooks", somebody),
    ):
        await page.goto(f"{base_url}{path}")
        await signed_out_to_login(page, base_url)
