"""`/docs` and `/redoc` render in a real browser with nothing but this service to talk
to: self-hosted and air-gapped installs have no CDN. Requests that would leave
loopback are refused and fail the test (a load the pages' Content-Security-Policy
refuses never becomes a request)."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator
from ipaddress import ip_address
from urllib.parse import urlsplit

import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from playwright.async_api import Browser, Page, Route, async_playwright
from playwright.async_api import TimeoutError as PlaywrightTimeout

from tests.fixtures.net import LOOPBACK

CHROMIUM = shutil.which("chromium")

needs_chromium = pytest.mark.skipif(
    CHROMIUM is None,
    reason="needs headless Chromium: Debian's `chromium` (.ci/install-system-packages)",
)

RENDER_TIMEOUT_MS = 20_000


def _is_loopback(url: str) -> bool:
    parts = urlsplit(url)
    if parts.scheme in {"data", "blob", "about"}:
        return True
    host = parts.hostname or ""
    if host == "localhost":
        return True
    try:
        return ip_address(host).is_loopback
    except ValueError:
        return False


@pytest.fixture
async def base_url(app: FastAPI) -> AsyncIterator[str]:
    """The session's app behind a real HTTP server; the fixture runs its lifespan."""
    server = uvicorn.Server(
        uvicorn.Config(app, host=LOOPBACK, port=0, lifespan="off", log_level="warning")
    )
    serving = asyncio.create_task(server.serve())
    while not server.started:
        assert not serving.done(), "uvicorn stopped before it started"
        await asyncio.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    yield f"http://{LOOPBACK}:{port}"
    server.should_exit = True
    await serving


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
        yield launched
        await launched.close()


class OfflinePage:
    """A browser page that may only reach loopback; it records what else it asked for."""

    def __init__(self, page: Page) -> None:
        self.page = page
        self.outside: list[str] = []

    async def _only_loopback(self, route: Route) -> None:
        if _is_loopback(route.request.url):
            await route.continue_()
        else:
            self.outside.append(route.request.url)
            await route.abort("internetdisconnected")

    async def render(self, url: str, *, ready: str) -> str:
        """Load `url`, wait for `ready` (a selector) to appear, return the visible text."""
        await self.page.route("**/*", self._only_loopback)
        await self.page.goto(url)
        try:
            await self.page.wait_for_selector(ready, timeout=RENDER_TIMEOUT_MS)
        except PlaywrightTimeout:
            pytest.fail(f"{url} did not render {ready!r}; outside requests: {self.outside}")
        assert not self.outside, f"{url} asked for {self.outside}"
        return await self.page.inner_text("body")


@pytest.fixture
async def offline_page(browser: Browser) -> AsyncIterator[OfflinePage]:
    context = await browser.new_context()
    yield OfflinePage(await context.new_page())
    await context.close()


@needs_chromium
async def test_swagger_ui_renders_the_operations_offline(
    base_url: str, offline_page: OfflinePage
) -> None:
    text = await offline_page.render(f"{base_url}/docs", ready=".opblock")
    for operation_id in ("login", "list_accounts", "list_messages"):
        assert operation_id in text
    assert "/api/messages" in text


@needs_chromium
async def test_redoc_renders_the_operations_offline(
    base_url: str, offline_page: OfflinePage
) -> None:
    text = await offline_page.render(
        f"{base_url}/redoc", ready='[data-section-id="operation/list_messages"]'
    )
    for summary in ("Login", "List Accounts", "List Messages"):
        assert summary in text
    assert await offline_page.page.locator('[data-section-id="operation/login"]').count() == 1


async def test_pages_allow_only_their_own_origin(client: httpx.AsyncClient) -> None:
    for page in ("/docs", "/redoc"):
        response = await client.get(page)
        assert response.status_code == 200
        assert "default-src 'self'" in response.headers["content-security-policy"]
        assert "https://" not in response.text, page


async def test_only_the_page_assets_are_served(client: httpx.AsyncClient) -> None:
    script = await client.get("/docs/assets/redoc.standalone.js")
    assert script.status_code == 200
    assert script.headers["content-type"].startswith("text/javascript")
    for name in ("core.py", "..%2F__init__.py", "..%2F..%2Ffastapi%2F__init__.py"):
        response = await client.get(f"/docs/assets/{name}")
        assert response.status_code != 200, name
