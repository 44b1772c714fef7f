"""The worker's `GET /metrics`: a tiny HTTP/1.1 server, since the worker has no other port.

What only the worker does (webhook deliveries, scheduled sends and retries, change-log
trims, the outbox gauge) is counted in its own process; this serves those numbers
with `render_metrics()` behind the api's METRICS_TOKEN rule (`scrape_allowed`).

It answers one request per connection and closes it (`Connection: close`), so there
is no keep-alive or pipelining to get wrong. Clients on the listening address are
not trusted: the request head is capped at `MAX_HEAD_BYTES` (431 beyond), a
connection gets `TIMEOUT_SECONDS` for the whole exchange (dropped after it, so a
slow or silent client holds nothing for long), and at most `MAX_CONNECTIONS` are
served at once (later ones are dropped at once). A request body is never read.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from http import HTTPStatus

import structlog
from pydantic import SecretStr

from mailsvc.config import Settings
from mailsvc.ops.metrics import METRICS_CONTENT_TYPE, render_metrics, scrape_allowed

MAX_HEAD_BYTES = 8 * 1024
TIMEOUT_SECONDS = 10.0
MAX_CONNECTIONS = 16

_TEXT = "text/plain; charset=utf-8"

log = structlog.get_logger("mailsvc.ops")


class MetricsServer:
    """Serves `GET /metrics` on one address until `close()`."""

    def __init__(self, *, token: SecretStr | None, timeout_seconds: float = TIMEOUT_SECONDS):
        self._token = token
        self._timeout = timeout_seconds
        self._server: asyncio.Server | None = None
        # Each connection being served: its handler task and its stream.
        self._connections: dict[asyncio.Task[None], asyncio.StreamWriter] = {}

    async def start(self, *, host: str, port: int) -> None:
        """Listen on `host:port` (port 0: any free port, see `port`)."""
        # `limit` bounds what readuntil buffers: a longer head raises LimitOverrunError.
        self._server = await asyncio.start_server(
            self._serve, host, port, limit=MAX_HEAD_BYTES, reuse_address=True
        )

    @property
    def port(self) -> int:
        """The port listened on."""
        assert self._server is not None, "started"
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    async def close(self) -> None:
        """Stop listening and drop the connections being served."""
        if self._server is None:
            return
        self._server.close()
        # Python 3.11's wait_closed does not wait for the connections: drop them, so
        # their handlers end on their own (cancelling them would make asyncio's
        # server callback log the CancelledError), then wait for the handlers.
        for writer in self._connections.values():
            writer.transport.abort()
        if self._connections:
            await asyncio.wait(list(self._connections), timeout=self._timeout)
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        if len(self._connections) >= MAX_CONNECTIONS:
            writer.transport.abort()
            return
        self._connections[task] = writer
        try:
            # A client too slow or gone gets nothing more; the close below drops it.
            with contextlib.suppress(TimeoutError, ConnectionError):
                async with asyncio.timeout(self._timeout):
                    response = await self._respond(reader)
                    if response is not None:
                        writer.write(response)
                        await writer.drain()
                    # Inside the deadline: closing waits for the client to take the rest.
                    writer.close()
                    await writer.wait_closed()
        finally:
            self._connections.pop(task, None)
            # Without flushing; a no-op on a connection closed cleanly above.
            writer.transport.abort()

    async def _respond(self, reader: asyncio.StreamReader) -> bytes | None:
        """The response to the request on `reader`; None when the client left early."""
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.LimitOverrunError:
            return _response(
                HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, b"request head too large\n"
            )
        except asyncio.IncompleteReadError:
            return None
        request_line, *header_lines = head.decode("latin-1").split("\r\n")
        parts = request_line.split(" ")
        if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
            return _response(HTTPStatus.BAD_REQUEST, b"not an HTTP/1.x request\n")
        method, target, _ = parts
        if target.partition("?")[0] != "/metrics":
            return _response(HTTPStatus.NOT_FOUND, b"only /metrics is served here\n")
        if method != "GET":
            return _response(HTTPStatus.METHOD_NOT_ALLOWED, b"GET only\n", {"Allow": "GET"})
        if not scrape_allowed(self._token, _header(header_lines, "authorization")):
            return _response(
                HTTPStatus.UNAUTHORIZED,
                b"metrics need the METRICS_TOKEN bearer token\n",
                {"WWW-Authenticate": "Bearer"},
            )
        return _response(HTTPStatus.OK, render_metrics(), content_type=METRICS_CONTENT_TYPE)


def _header(lines: list[str], name: str) -> str | None:
    """The first value of header `name` (lowercase) in the request's header lines."""
    for line in lines:
        field, separator, value = line.partition(":")
        if separator and field.strip().lower() == name:
            return value.strip()
    return None


def _response(
    status: HTTPStatus,
    body: bytes,
    headers: dict[str, str] | None = None,
    *,
    content_type: str = _TEXT,
) -> bytes:
    lines = [
        f"HTTP/1.1 {status.value} {status.phrase}",
        f"Content-Type: {content_type}",
        f"Content-Length: {len(body)}",
        "Connection: close",
        *(f"{name}: {value}" for name, value in (headers or {}).items()),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


@asynccontextmanager
async def serve_worker_metrics(settings: Settings) -> AsyncIterator[MetricsServer | None]:
    """The worker's metrics server while the block runs; None with WORKER_METRICS_PORT unset."""
    if settings.worker_metrics_port is None:
        yield None
        return
    server = MetricsServer(token=settings.metrics_token)
    await server.start(host=settings.worker_metrics_host, port=settings.worker_metrics_port)
    log.info(
        "worker_metrics.listening",
        host=settings.worker_metrics_host,
        port=settings.worker_metrics_port,
    )
    try:
        yield server
    finally:
        await server.close()
