"""POSTs to webhook receivers.

Redirects are not followed (a receiver that moved must be updated, and following
would let a public URL bounce the request into a private network), at most
`EXCERPT_BYTES` of an answer are read, and the whole exchange is bounded by one
timeout (kit/outbound_http.py). Every failure comes back as a `PostResult` with an
error, never as an exception.
"""

from __future__ import annotations

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

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


class WebhookClient:
    """A pooled HTTP client for webhook POSTs (connections to a receiver are reused)."""

    def __init__(self, *, timeout_seconds: float) -> None:
        self._http = OutboundHttp(timeout_seconds=timeout_seconds)

    async def post(self, url: str, *, body: bytes, headers: dict[str, str]) -> PostResult:
        """POST `body` to `url` once; 2xx is success, anything else an error."""
        try:
            answer = await self._http.request(
                "POST", url, content=body, headers=headers, max_body=EXCERPT_BYTES
            )
        except OutboundHttpError as exc:
            return PostResult(None, str(exc))
        code, excerpt = answer.status_code, answer.body
        if 200 <= code < 300:
            return PostResult(code, None)
        if 300 <= code < 400:
            return PostResult(code, f"HTTP {code}: redirects are not followed")
        detail = _printable(excerpt.decode(errors="replace"))[:_ERROR_EXCERPT_CHARS]
        return PostResult(code, f"HTTP {code}: {detail}" if detail else f"HTTP {code}")

    async def aclose(self) -> None:
        """Close the pooled connections."""
        await self._http.aclose()


def _printable(text: str) -> str:
    return " ".join("".join(ch if ch.isprintable() else " " for ch in text).split())
