"""A webhook the service disabled after failed deliveries: the console shows why,
re-enables it, and sends it a test event."""

from __future__ import annotations

import re

import httpx
from fastapi import FastAPI
from playwright.async_api import Page, expect

from mailsvc.config import Settings
from mailsvc.sync.engine import SyncEngine
from tests.console.conftest import (
    PAGE_TIMEOUT_MS,
    Operator,
    console_path,
    create_webhook,
    new_account,
    sign_in,
)
from tests.fixtures.browser import Screenshot, needs_chromium
from tests.fixtures.dovecot import DovecotServer
from tests.fixtures.smtp_server import SmtpRelay
from tests.fixtures.waiting import eventually
from tests.webhook.conftest import webhook_worker
from tests.webhook.receiver import Receiver

pytestmark = needs_chromium


async def test_a_disabled_webhook_shows_its_reason_is_enabled_and_tested(
    app: FastAPI,
    base_url: str,
    page: Page,
    screenshot: Screenshot,
    operator_a: Operator,
    client: httpx.AsyncClient,
    settings: Settings,
    engine: SyncEngine,
    dovecot: DovecotServer,
    smtp_relay: SmtpRelay,
    receiver: Receiver,
) -> None:
    # The service's own path to a disabled webhook: two deliveries in a row that
    # failed every attempt (two each, quickly).
    hook_settings = settings.model_copy(
        update={
            "webhook_timeout_seconds": 3.0,
            "webhook_retry_base_seconds": 0.2,
            "webhook_retry_max_seconds": 1.0,
            "webhook_max_attempts": 2,
            "webhook_disable_after_failures": 2,
        }
    )
    receiver.status = 500
    webhook = await create_webhook(client, operator_a, receiver.url)
    path = f"/api/webhooks/{webhook['id']}"
    account = await new_account(
        client,
        operator_a.auth,
        dovecot,
        smtp_relay,
        messages=3,
        sync_options={"events_for_existing": True},
    )
    try:
        async with webhook_worker(app, hook_settings):
            await engine.sync_account(operator_a.tenant_id, account.account_id)

            async def disabled() -> bool:
                return (await client.get(path, headers=operator_a.auth)).json()["active"] is False

            await eventually(disabled, within=60, what="webhook disabled by the service")

            await sign_in(page, base_url, operator_a)
            webhooks_url = f"{base_url}{console_path(operator_a.tenant_id, 'webhooks')}"
            await page.goto(webhooks_url)
            row = page.locator(f'tr[data-webhook-id="{webhook["id"]}"]')
            await expect(row.locator("[data-field=active]")).to_have_text("disabled")
            await expect(row.locator("[data-field=disabled-reason]")).to_contain_text(
                "disabled after 2 deliveries in a row failed"
            )
            await expect(row.locator("[data-field=disabled-reason]")).to_contain_text("HTTP 500")
            await screenshot(page, "webhooks")

            # A test while the receiver still fails reports its answer too.
            async with page.expect_navigation():
                await row.locator("button[value=test]").click()
            await expect(page.locator(".flash")).to_contain_text("500")
            assert receiver.requests[-1].event["type"] == "webhook.test"
            assert (await client.get(path, headers=operator_a.auth)).json()["active"] is False

            await page.goto(
                f"{base_url}{console_path(operator_a.tenant_id, 'webhooks', webhook['id'])}"
            )
            failed = page.locator("#deliveries tr[data-delivery-id]").filter(
                has=page.locator("[data-field=status]", has_text=re.compile(r"\bfailed\b"))
            )
            await expect(failed).to_have_count(2)
            for latency in await failed.locator("[data-field=latency]").all():
                await expect(latency).to_have_text(re.compile(r"\d"))
            await screenshot(page, "webhook")

            receiver.status = 200
            await page.goto(webhooks_url)
            async with page.expect_navigation():
                await row.locator("button[value=enable]").click()
            await expect(page).to_have_url(webhooks_url, timeout=PAGE_TIMEOUT_MS)
            await expect(row.locator("[data-field=active]")).to_have_text("active")
            await expect(row.locator("button[value=enable]")).to_have_count(0)
            await expect(row.locator("[data-field=disabled-reason]")).to_have_text("")
            current = (await client.get(path, headers=operator_a.auth)).json()
            assert (current["active"], current["disabled_reason"]) == (True, None)

            # Re-enabled, the events that waited go out.
            async def delivered() -> bool:
                return len(receiver.accepted()) > 0

            await eventually(delivered, within=30, what="waiting events delivered")

            tests_before = sum(r.event["type"] == "webhook.test" for r in receiver.accepted())
            async with page.expect_navigation():
                await row.locator("button[value=test]").click()
            flash = page.locator(".flash")
            await expect(flash).to_be_visible()
            await expect(flash).to_contain_text("200")
            await expect(page.locator(".flash.error")).to_have_count(0)
            tests_after = sum(r.event["type"] == "webhook.test" for r in receiver.accepted())
            assert tests_after == tests_before + 1
    finally:
        await client.delete(path, headers=operator_a.auth)
