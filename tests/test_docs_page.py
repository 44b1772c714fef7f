"""`/docs` and `/redoc` render in a real browser with nothing but this service to talk
to: self-hosted and air-gapped installs have no CDN. Requests that would leave
loopback are refused and fail the test (a load the pages' Content-Security-Policy
refuses never becomes a request)."""

from __future__ import annotations

import httpx
import pytest
from playwright.async_api import Page
from playwright.async_api import TimeoutError as PlaywrightTimeout

from tests.fixtures import browser
from tests.fixtures.browser import BrowserPages, needs_chromium

# The shared browser fixtures, for this module's tests.
base_url = browser.base_url
chromium = browser.chromium
pages = browser.pages
page = browser.page

RENDER_TIMEOUT_MS = 20_000


async def _render(page: Page, pages: BrowserPages, url: str, *, ready: str) -> str:
    """Load `url`, wait for `ready` (a selector) to appear, return the visible text."""
    await page.goto(url)
    try:
        await page.wait_for_selector(ready, timeout=RENDER_TIMEOUT_MS)
    except PlaywrightTimeout:
        outside = pages.guard_of(page).outside
        pytest.fail(f"{url} did not render {ready!r}; outside requests: {outside}")
    return await page.inner_text("body")


@needs_chromium
async def test_swagger_ui_renders_the_operations_offline(
    base_url: str, page: Page, pages: BrowserPages
) -> None:
    text = await _render(page, pages, f"{base_url}/docs", ready=".opblock")
    for operation_id in ("login", "list_accounts", "list_messages"):
        assert operation_id in text
    assert "/api/messages" in text


@needs_chromium
async def test_redoc_renders_the_operations_offline(
    base_url: str, page: Page, pages: BrowserPages
) -> None:
    # ReDoc's built-in logo points at its CDN; the page's CSP refuses it (no request).
    pages.allow_error(r"https://cdn\.redoc\.ly/redoc/logo-mini\.svg")
    text = await _render(
        page, pages, f"{base_url}/redoc", ready='[data-section-id="operation/list_messages"]'
    )
    for summary in ("Login", "List Accounts", "List Messages"):
        assert summary in text
    assert await page.locator('[data-section-id="operation/login"]').count() == 1


async def test_pages_allow_only_their_own_origin(client: httpx.AsyncClient) -> None:
    for path in ("/docs", "/redoc"):
        response = await client.get(path)
        assert response.status_code == 200
        assert "default-src 'self'" in response.headers["content-security-policy"]
        assert "https://" not in response.text, path


async def test_only_the_page_assets_are_served(client: httpx.AsyncClient) -> None:
    script = await client.get("/docs/assets/redoc.standalone.js")
    assert script.status_code == 200
    assert script.headers["content-type"].startswith("text/javascript")
    for name in ("core.py", "..%2F__init__.py", "..%2F..%2Ffastapi%2F__init__.py"):
        response = await client.get(f"/docs/assets/{name}")
        assert response.status_code != 200, name
