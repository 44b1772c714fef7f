"""What the browser is told and refused: a form posted without its CSRF token changes
nothing, every console response carries a Content-Security-Policy that allows only
the console's own scripts, and a console switched off is not there at all."""

from __future__ import annotations

import re

import httpx
from playwright.async_api import Page, Response, expect

from mailsvc.app import create_app
from mailsvc.config import Settings
from tests.console.conftest import (
    PAGE_TIMEOUT_MS,
    Operator,
    console_path,
    create_webhook,
    new_account,
    schedule_send,
    sign_in,
)
from tests.fixtures.browser import BrowserPages, needs_chromium, serving
from tests.fixtures.dovecot import DovecotServer
from tests.fixtures.smtp_server import SmtpRelay
from tests.webhook.receiver import Receiver

pytestmark = needs_chromium

_QUEUED = re.compile(r"\bqueued\b")


async def test_a_post_without_the_csrf_token_is_refused_and_changes_nothing(
    base_url: str,
    page: Page,
    pages: BrowserPages,
    operator_a: Operator,
    client: httpx.AsyncClient,
    dovecot: DovecotServer,
    smtp_relay: SmtpRelay,
) -> None:
    account = await new_account(client, operator_a.auth, dovecot, smtp_relay)
    entry = await schedule_send(client, operator_a, account, subject="Not to be cancelled")
    outbox_url = f"{base_url}{console_path(operator_a.tenant_id, 'outbox')}"
    await sign_in(page, base_url, operator_a)
    pages.allow_error(r"the server responded with a status of 403")

    for tamper in (
        "button => button.form.querySelector('input[name=csrf_token]').remove()",
        "button => { button.form.querySelector('input[name=csrf_token]').value = 'forged'; }",
    ):
        await page.goto(outbox_url)
        cancel = page.locator(f'tr[data-outbox-id="{entry["id"]}"] button[value=cancel]')
        await cancel.evaluate(tamper)
        async with page.expect_navigation() as navigation:
            await cancel.click()
        refused = await navigation.value
        assert refused is not None
        assert refused.status == 403, tamper

        current = await client.get(f"/api/outbox/{entry['id']}", headers=operator_a.auth)
        assert current.json()["status"] == "queued", tamper
        await page.goto(outbox_url)
        status = page.locator(f'tr[data-outbox-id="{entry["id"]}"] [data-field=status]')
        await expect(status).to_have_text(_QUEUED)


async def test_every_console_response_allows_only_the_consoles_own_scripts(
    base_url: str,
    page: Page,
    operator_a: Operator,
    client: httpx.AsyncClient,
    dovecot: DovecotServer,
    smtp_relay: SmtpRelay,
    receiver: Receiver,
) -> None:
    account = await new_account(client, operator_a.auth, dovecot, smtp_relay)
    await schedule_send(client, operator_a, account, subject="On the outbox page")
    webhook = await create_webhook(client, operator_a, receiver.url)
    responses: list[Response] = []

    def received(response: Response) -> None:
        responses.append(response)

    page.on("response", received)
    tenant = operator_a.tenant_id
    try:
        await sign_in(page, base_url, operator_a)
        # The account page's event stream too.
        async with page.expect_response(lambda r: r.request.resource_type == "eventsource"):
            await page.goto(f"{base_url}{console_path(tenant, 'accounts', account.account_id)}")
        for path in (
            console_path(tenant, "outbox"),
            console_path(tenant, "webhooks"),
            console_path(tenant, "webhooks", webhook["id"]),
            console_path(tenant, "keys"),
            console_path(tenant, "accounts"),
        ):
            await page.goto(f"{base_url}{path}")
        # The accounts table's own refresh, every 2 s.
        await page.wait_for_event(
            "response",
            lambda r: (
                r.url.startswith(f"{base_url}{console_path(tenant, 'accounts')}")
                and r.request.resource_type in {"xhr", "fetch"}
            ),
            timeout=PAGE_TIMEOUT_MS,
        )
    finally:
        await client.delete(f"/api/webhooks/{webhook['id']}", headers=operator_a.auth)

    console = [r for r in responses if r.url.startswith(f"{base_url}/console")]
    kinds = {r.request.resource_type for r in console}
    assert {"document", "script", "eventsource", "xhr"} <= kinds, kinds
    for response in console:
        policy = await response.header_value("content-security-policy")
        assert policy is not None, f"{response.url} ({response.status}) has no CSP"
        directives = {
            name: values
            for name, *values in (part.split() for part in policy.split(";") if part.strip())
        }
        assert directives.get("script-src") == ["'self'"], (response.url, policy)
        assert "'unsafe-inline'" not in policy, (response.url, policy)
        assert "'unsafe-eval'" not in policy, (response.url, policy)


async def test_a_console_switched_off_is_not_found(
    settings: Settings, page: Page, pages: BrowserPages
) -> None:
    without = create_app(settings.model_copy(update={"console_enabled": False}))
    pages.allow_error(r"the server responded with a status of 404")
    async with without.router.lifespan_context(without), serving(without) as url:
        for path in ("/console", "/console/login", "/console/t-someone/accounts"):
            response = await page.goto(f"{url}{path}")
            assert response is not None
            assert response.status == 404, path
            await expect(page.locator("form#login")).to_have_count(0)
        # The API beside it is still there.
        health = await page.goto(f"{url}/health")
        assert health is not None
        assert health.status == 200
