"""Request id, access log, metrics and body-size cap, as one pure ASGI middleware.

Pure ASGI rather than `BaseHTTPMiddleware`: no extra task per request, and
streaming responses (SSE, attachment downloads) pass through untouched.
"""

from __future__ import annotations

import re
import time
import uuid

import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mailsvc.errors import PayloadTooLargeError, Problem, problem_response
from mailsvc.ops.metrics import observe_request

_VALID_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,128}$")
log = structlog.get_logger("mailsvc.http")


class RequestContextMiddleware:
    def __init__(self, app: ASGIApp, *, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        offered = headers.get(b"x-request-id", b"").decode("latin-1")
        # A client-chosen id is kept only if harmless: it ends up in every log line.
        request_id = offered if _VALID_REQUEST_ID.match(offered) else uuid.uuid4().hex
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(request_id=request_id)
        started = time.perf_counter()
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message.setdefault("headers", [])
                message["headers"].append((b"x-request-id", request_id.encode()))
            await send(message)

        try:
            declared = int(headers.get(b"content-length", b"0") or 0)
        except ValueError:
            declared = 0
        if declared > self.max_body_bytes:
            response = problem_response(
                Problem(
                    title="Content Too Large",
                    status=413,
                    code="body_too_large",
                    detail=f"request body exceeds {self.max_body_bytes} bytes",
                )
            )
            await response(scope, receive, send_with_id)
        else:
            await self.app(scope, _capped(receive, self.max_body_bytes), send_with_id)
        elapsed = time.perf_counter() - started
        route = scope.get("route")
        template = getattr(route, "path", "unmatched")
        observe_request(method=scope["method"], route=template, status=status, seconds=elapsed)
        log.info(
            "http.request",
            method=scope["method"],
            route=template,
            status=status,
            duration_ms=round(elapsed * 1000, 2),
        )


def _capped(receive: Receive, limit: int) -> Receive:
    """Enforce the cap on chunked bodies too, where no Content-Length was declared."""
    seen = 0

    async def wrapped() -> Message:
        nonlocal seen
        message = await receive()
        if message["type"] == "http.request":
            seen += len(message.get("body", b""))
            if seen > limit:
                raise PayloadTooLargeError(
                    f"request body exceeds {limit} bytes", code="body_too_large"
                )
        return message

    return wrapped
