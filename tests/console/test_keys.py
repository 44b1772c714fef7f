"""Creating an API key in the console, signing in with it, and revoking it: the
revoked key no longer signs in, and the session it opened ends."""

from __future__ import annotations

import re
import secrets

from playwright.async_api import Page, expect

from tests.console.conftest import (
    PAGE_TIMEOUT_MS,
    Operator,
    console_path,
    sign_in,
    signed_out_to_login,
    submit_login,
)
from tests.fixtures.app import remember_secret
from tests.fixtures.browser import BrowserPages, Screenshot, needs_chromium

pytestmark = needs_chromium


async def test_a_key_made_in_the_console_signs_in_until_it_is_revoked(
    base_url: str,
    pages: BrowserPages,
    screenshot: Screenshot,
    operator_a: Operator,
) -> None:
    tenant = operator_a.tenant_id
    keys_url = f"{base_url}{console_path(tenant, 'keys')}"
    admin: Page = await pages.new()
    await sign_in(admin, base_url, operator_a)
    await admin.goto(keys_url)

    name = f"deploy bot {secrets.token_hex(3)}"
    await admin.locator("form#create-key input[name=name]").fill(name)
    async with admin.expect_navigation():
        await admin.locator("form#create-key [type=submit]").click()
    shown = admin.locator("#new-key code")
    await expect(shown).to_have_text(re.compile(r"^\s*msk_\S+\s*$"), timeout=PAGE_TIMEOUT_MS)
    new_key = remember_secret((await shown.inner_text()).strip())
    row = admin.locator("tr[data-key-id]", has_text=name)
    await expect(row).to_have_count(1)
    await expect(row.locator("[data-field=status]")).to_have_text("active")
    await screenshot(admin, "keys")

    # Shown once: the page loaded again has no trace of it.
    await admin.goto(keys_url)
    await expect(admin.locator("#new-key")).to_have_count(0)
    assert new_key not in await admin.content()

    # Someone else signs in with the new key, in a browser of their own.
    colleague = await pages.new()
    await sign_in(colleague, base_url, Operator(tenant, new_key, operator_a.auth))

    async with admin.expect_navigation():
        await row.locator("button[value=revoke]").click()
    await expect(admin).to_have_url(keys_url, timeout=PAGE_TIMEOUT_MS)
    await expect(row.locator("[data-field=status]")).to_have_text("revoked")
    await expect(row.locator("button[value=revoke]")).to_have_count(0)

    # The revoked key signs in nowhere, and the session it opened is over.
    pages.allow_error(r"the server responded with a status of 40[013]")
    stranger = await pages.new()
    await submit_login(stranger, base_url, new_key)
    await expect(stranger.locator(".flash.error")).to_be_visible()
    await expect(stranger.locator("form#login")).to_be_visible()

    await colleague.goto(f"{base_url}{console_path(tenant, 'accounts')}")
    await signed_out_to_login(colleague, base_url)

    # The operator's own session is untouched.
    await admin.goto(f"{base_url}{console_path(tenant, 'accounts')}")
    await expect(admin).to_have_url(
        f"{base_url}{console_path(tenant, 'accounts')}", timeout=PAGE_TIMEOUT_MS
    )
