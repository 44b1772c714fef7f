"""Tenant B's operator, signed in to the console, never sees tenant A's accounts,
sends or webhook deliveries: not on the lists, not by opening A's addresses."""

from __future__ import annotations

from typing import Any

import httpx
from fastapi import FastAPI
from playwright.async_api import Page, expect

from mailsvc.config import Settings
from mailsvc.sync.engine import SyncEngine
from tests.console.conftest import (
    Operator,
    console_path,
    create_webhook,
    new_account,
    schedule_send,
    sign_in,
)
from tests.fixtures.browser import BrowserPages, needs_chromium
from tests.fixtures.dovecot import DovecotServer
from tests.fixtures.smtp_server import SmtpRelay
from tests.fixtures.waiting import eventually
from tests.webhook.conftest import webhook_worker
from tests.webhook.receiver import Receiver

pytestmark = needs_chromium


async def _deliveries(
    client: httpx.AsyncClient, operator: Operator, webhook_id: str
) -> list[dict[str, Any]]:
    response = await client.get(
        f"/api/webhooks/{webhook_id}/deliveries", params={"limit": 200}, headers=operator.auth
    )
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


async def test_tenant_b_sees_nothing_of_tenant_a(
    app: FastAPI,
    base_url: str,
    page: Page,
    pages: BrowserPages,
    operator_a: Operator,
    operator_b: Operator,
    client: httpx.AsyncClient,
    settings: Settings,
    engine: SyncEngine,
    dovecot: DovecotServer,
    smtp_relay: SmtpRelay,
    receiver: Receiver,
) -> None:
    # Tenant A: an account whose first mirror was delivered to A's webhook, and a send.
    a_webhook = await create_webhook(client, operator_a, receiver.url)
    a_account = await new_account(
        client,
        operator_a.auth,
        dovecot,
        smtp_relay,
        messages=2,
        sync_options={"events_for_existing": True},
    )
    a_send = await schedule_send(client, operator_a, a_account, subject="Tenant A's send")
    b_account = await new_account(client, operator_b.auth, dovecot, smtp_relay)
    b_send = await schedule_send(client, operator_b, b_account, subject="Tenant B's send")
    b_webhook = await create_webhook(client, operator_b, "http://127.0.0.1:9/hooks/tenant-b")
    try:
        async with webhook_worker(app, settings):
            await engine.sync_account(operator_a.tenant_id, a_account.account_id)

            async def delivered() -> bool:
                found = await _deliveries(client, operator_a, a_webhook["id"])
                return any(d["event_type"] == "message.created" for d in found) and all(
                    d["status"] == "succeeded" for d in found
                )

            await eventually(delivered, within=60, what="tenant A's deliveries made")
        a_deliveries = [d["id"] for d in await _deliveries(client, operator_a, a_webhook["id"])]
        a_secrets = [a_account.user.email, str(a_account.account_id), a_send["id"]]
        a_secrets += [a_webhook["id"], receiver.url, *a_deliveries]

        await sign_in(page, base_url, operator_b)
        switcher = page.locator("a.tenant[data-tenant]")
        await expect(switcher).to_have_count(1)
        assert await switcher.get_attribute("data-tenant") == operator_b.tenant_id

        b = operator_b.tenant_id
        for section, own in (
            ("accounts", f'tr[data-account-id="{b_account.account_id}"]'),
            ("outbox", f'tr[data-outbox-id="{b_send["id"]}"]'),
            ("webhooks", f'tr[data-webhook-id="{b_webhook["id"]}"]'),
        ):
            await page.goto(f"{base_url}{console_path(b, section)}")
            await expect(page.locator(own)).to_have_count(1)
            await _shows_none_of(page, a_secrets)
        await page.goto(f"{base_url}{console_path(b, 'webhooks', b_webhook['id'])}")
        await expect(page.locator("#deliveries")).to_be_attached()
        await expect(page.locator("#deliveries tr[data-delivery-id]")).to_have_count(0)
        await _shows_none_of(page, a_secrets)

        # A's addresses, under B's tenant and under A's own: refused, not shown.
        pages.allow_error(r"the server responded with a status of 40[34]")
        a = operator_a.tenant_id
        for path in (
            console_path(b, "accounts", a_account.account_id),
            console_path(b, "webhooks", a_webhook["id"]),
            console_path(a, "accounts", a_account.account_id),
            console_path(a, "webhooks", a_webhook["id"]),
            console_path(a, "accounts"),
            console_path(a, "outbox"),
            console_path(a, "webhooks"),
            console_path(a, "keys"),
        ):
            response = await page.goto(f"{base_url}{path}")
            assert response is not None
            assert response.status in (403, 404), (path, response.status)
            await _shows_none_of(page, a_secrets)
    finally:
        await client.delete(f"/api/webhooks/{a_webhook['id']}", headers=operator_a.auth)
        await client.delete(f"/api/webhooks/{b_webhook['id']}", headers=operator_b.auth)


async def _shows_none_of(page: Page, values: list[str]) -> None:
    html = await page.content()
    shown = [value for value in values if value in html]
    assert not shown, f"{page.url} shows tenant A's {shown}"
