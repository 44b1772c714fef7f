"""Requests mailsvc makes to other services (webhook receivers, OAuth2 providers).

The only importer of httpx. Redirects are never followed (a followed redirect could
carry a secret, or bounce a request to a public URL into a private network), the
environment's proxies and .netrc are ignored, at most `max_body` bytes of an answer
are read, and the whole exchange is bounded by one timeout. A failure to get an
answer raises `OutboundHttpError` with a message safe to store; any answer,
whatever its status, is returned.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass

import httpx


class OutboundHttpError(Exception):
    """No answer: timeout, refused or reset connection, TLS failure, unusable URL."""


@dataclass(frozen=True, slots=True)
class HttpAnswer:
    """A response: its status and the first bytes of its body."""

    status_code: int
    body: bytes
    # The body went on past `max_body`: `body` is only its start.
    truncated: bool


class OutboundHttp:
    """A pooled HTTP client (connections to one host are reused)."""

    def __init__(self, *, timeout_seconds: float, max_connections: int = 100) -> None:
        self.timeout_seconds = timeout_seconds
        self._http = httpx.AsyncClient(
            follow_redirects=False,
            trust_env=False,
            timeout=httpx.Timeout(timeout_seconds),
            limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=20),
        )

    async def request(
        self,
        method: str,
        url: str,
        *,
        max_body: int,
        headers: Mapping[str, str] | None = None,
        content: bytes | None = None,
        form: Mapping[str, str] | None = None,
    ) -> HttpAnswer:
        """Send one request; the status and up to `max_body` bytes of the answer."""
        # No compression: the bytes read are the bytes the peer wrote, and a small
        # compressed body cannot expand past the cap in memory.
        headers = {**(headers or {}), "Accept-Encoding": "identity"}
        try:
            async with (
                asyncio.timeout(self.timeout_seconds),
                self._http.stream(
                    method, url, content=content, data=form, headers=headers
                ) as response,
            ):
                body, truncated = await _read_start(response, max_body)
        except (TimeoutError, httpx.TimeoutException) as exc:
            raise OutboundHttpError(f"no answer within {self.timeout_seconds:g} s") from exc
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            reason = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            raise OutboundHttpError(f"request failed: {reason}") from exc
        return HttpAnswer(response.status_code, body, truncated)

    async def aclose(self) -> None:
        """Close the pooled connections."""
        await self._http.aclose()


async def _read_start(response: httpx.Response, limit: int) -> tuple[bytes, bool]:
    body = bytearray()
    async for chunk in response.aiter_raw():
        body += chunk
        if len(body) > limit:
            return bytes(body[:limit]), True
    return bytes(body), False
