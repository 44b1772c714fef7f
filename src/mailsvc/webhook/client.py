"""POSTs to webhook receivers.

Redirects are not followed (a receiver that moved must be updated, and following
would let a public URL bounce the request into a private network), at most
`EXCERPT_BYTES` of an answer are read, and the whole exchange is bounded by one
timeout (kit/outbound_http.py). Every failure comes back as a `PostResult` with an
error, never as an exception.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from mailsvc.kit.outbound_http import OutboundHttp, OutboundHttpError

# Of an answer's body, only the start is kept (for `last_error`).
EXCERPT_BYTES = 4096
_ERROR_EXCERPT_CHARS = 200


@dataclass(frozen=True, slots=True)
class PostResult:
    """What the receiver answered: its status code, or why there was no answer."""

    status_code: int | None
    error: str | None
    # Milliseconds until the answer, or until the request failed (a timeout, a refused
    # connection); None when no request was made.
    duration_ms: int | None = None

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


class WebhookClient:
    """A pooled HTTP client for webhook POSTs (connections to a receiver are reused)."""

    def __init__(self, *, timeout_seconds: float) -> None:
        self._http = OutboundHttp(timeout_seconds=timeout_seconds)

    async def post(self, url: str, *, body: bytes, headers: dict[str, str]) -> PostResult:
        """POST `body` to `url` once; 2xx is success, anything else an error."""
        started = time.monotonic()
        try:
            answer = await self._http.request(
                "POST", url, content=body, headers=headers, max_body=EXCERPT_BYTES
            )
        except OutboundHttpError as exc:
            return PostResult(None, str(exc), _elapsed_ms(started))
        duration_ms = _elapsed_ms(started)
        code, excerpt = answer.status_code, answer.body
        if 200 <= code < 300:
            return PostResult(code, None, duration_ms)
        if 300 <= code < 400:
            return PostResult(code, f"HTTP {code}: redirects are not followed", duration_ms)
        detail = _printable(excerpt.decode(errors="replace"))[:_ERROR_EXCERPT_CHARS]
        error = f"HTTP {code}: {detail}" if detail else f"HTTP {code}"
        return PostResult(code, error, duration_ms)

    async def aclose(self) -> None:
        """Close the pooled connections."""
        await self._http.aclose()


def _elapsed_ms(started: float) -> int:
    return int((time.monotonic() - started) * 1000)


def _printable(text: str) -> str:
    return " ".join("".join(ch if ch.isprintable() else " " for ch in text).split())
