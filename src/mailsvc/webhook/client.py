"""POSTs to webhook receivers; the only importer of httpx.

Redirects are not followed (a receiver that moved must be updated, and following
would let a public URL bounce the request into a private network), at most
`EXCERPT_BYTES` of an answer are read, and the whole exchange is bounded by one
timeout. Every failure comes back as a `PostResult` with an error, never as an
exception.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import httpx

# Of an answer's body, only the start is kept (for `last_error`).
EXCERPT_BYTES = 4096
_ERROR_EXCERPT_CHARS = 200


@dataclass(frozen=True, slots=True)
class PostResult:
    """What the receiver answered: its status code, or why there was no answer."""

    status_code: int | None
    error: str | None

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


class WebhookClient:
    """A pooled HTTP client for webhook POSTs (connections to a receiver are reused)."""

    def __init__(self, *, timeout_seconds: float) -> None:
        self._timeout = timeout_seconds
        self._http = httpx.AsyncClient(
            follow_redirects=False,
            # Proxies and .netrc from the environment would change who connects where.
            trust_env=False,
            timeout=httpx.Timeout(timeout_seconds),
            limits=httpx.Limits(max_connections=100, max_keepalive_connections=20),
        )

    async def post(self, url: str, *, body: bytes, headers: dict[str, str]) -> PostResult:
        """POST `body` to `url` once; 2xx is success, anything else an error."""
        # No compression: the few bytes read are the bytes the receiver wrote.
        headers = {**headers, "Accept-Encoding": "identity"}
        try:
            async with (
                asyncio.timeout(self._timeout),
                self._http.stream("POST", url, content=body, headers=headers) as response,
            ):
                excerpt = await _read_excerpt(response)
        except (TimeoutError, httpx.TimeoutException):
            return PostResult(None, f"no answer within {self._timeout:g} s")
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            reason = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            return PostResult(None, f"request failed: {reason}")
        code = response.status_code
        if 200 <= code < 300:
            return PostResult(code, None)
        if 300 <= code < 400:
            return PostResult(code, f"HTTP {code}: redirects are not followed")
        detail = _printable(excerpt.decode(errors="replace"))[:_ERROR_EXCERPT_CHARS]
        return PostResult(code, f"HTTP {code}: {detail}" if detail else f"HTTP {code}")

    async def aclose(self) -> None:
        """Close the pooled connections."""
        await self._http.aclose()


async def _read_excerpt(response: httpx.Response) -> bytes:
    excerpt = b""
    async for chunk in response.aiter_raw():
        excerpt += chunk
        if len(excerpt) >= EXCERPT_BYTES:
            break
    return excerpt[:EXCERPT_BYTES]


def _printable(text: str) -> str:
    return " ".join("".join(ch if ch.isprintable() else " " for ch in text).split())
