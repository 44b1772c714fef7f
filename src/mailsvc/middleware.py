"""Request id, access log, metrics and body-size cap, as one pure ASGI middleware.

Pure ASGI rather than `BaseHTTPMiddleware`: no extra task per request, and
streaming responses (SSE, attachment downloads) pass through untouched.
"""

from __future__ import annotations

import re
import time
import uuid

import structlog
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mailsvc.errors import PayloadTooLargeError, Problem, problem_response
from mailsvc.kit.http import RESPONSE_HEADERS_KEY
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
                sent = message["headers"] = list(message.get("headers", []))
                sent.append((b"x-request-id", request_id.encode()))
                sent.extend(scope.get(RESPONSE_HEADERS_KEY, ()))
            await send(message)

        try:
            declared = int(headers.get(b"content-length", b"0") or 0)
        except ValueError:
            declared = 0
        if declared > self.max_body_bytes:
            await _too_large(self.max_body_bytes)(scope, receive, send_with_id)
        else:
            await self._call_capped(scope, receive, send_with_id)
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

    async def _call_capped(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Run the app, answering 413 if a body with no declared size outgrows the cap.

        The cap trips inside the app's body reading, where FastAPI turns any error into
        `400 There was an error parsing the body`; so the app's answer to a refused
        body is dropped and the same 413 as a declared oversize is sent instead.
        """
        cap = _BodyCap(receive, self.max_body_bytes)
        response_started = False

        async def send_unless_refused(message: Message) -> None:
            nonlocal response_started
            if cap.exceeded and not response_started:
                return
            if message["type"] == "http.response.start":
                response_started = True
            await send(message)

        await self.app(scope, cap.receive, send_unless_refused)
        # A response already under way when the cap tripped (a route streaming its
        # answer while reading) cannot be replaced; it ends as the app ends it.
        if cap.exceeded and not response_started:
            await _too_large(self.max_body_bytes)(scope, receive, send)


def _too_large(limit: int) -> Response:
    return problem_response(
        Problem(
            title="Content Too Large",
            status=413,
            code="body_too_large",
            detail=f"request body exceeds {limit} bytes",
        )
    )


class _BodyCap:
    """Counts the body as the app reads it; past the limit, reading fails."""

    def __init__(self, receive: Receive, limit: int) -> None:
        self._receive = receive
        self._limit = limit
        self._seen = 0
        self.exceeded = False

    async def receive(self) -> Message:
        if self.exceeded:
            raise self._error()
        message = await self._receive()
        if message["type"] == "http.request":
            self._seen += len(message.get("body", b""))
            if self._seen > self._limit:
                self.exceeded = True
                raise self._error()
        return message

    def _error(self) -> PayloadTooLargeError:
        return PayloadTooLargeError(
            f"request body exceeds {self._limit} bytes", code="body_too_large"
        )
