"""A webhook receiver for tests: a tiny HTTP/1.1 server on loopback that records every
request and answers as told (status, delay, or not at all: down)."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
from dataclasses import dataclass, field
from typing import Any

from tests.fixtures.net import LOOPBACK, free_port


@dataclass(frozen=True)
class Request:
    """One request as it arrived, and the status it was answered with (None: the
    connection went away first)."""

    path: str
    headers: dict[str, str]  # lower-case names
    body: bytes
    status: int | None

    @property
    def delivery_id(self) -> str:
        return self.headers["webhook-id"]

    @property
    def event(self) -> dict[str, Any]:
        event: dict[str, Any] = json.loads(self.body)
        return event


@dataclass
class Receiver:
    """Answers `status` after `delay` seconds; `stop()` makes connections fail."""

    status: int = 200
    delay: float = 0.0
    port: int = field(default_factory=free_port)
    requests: list[Request] = field(default_factory=list)
    # Delivery ids of the requests read but not answered yet.
    in_flight: set[str] = field(default_factory=set)
    _server: asyncio.Server | None = None
    _connections: set[asyncio.StreamWriter] = field(default_factory=set)

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}/hooks/mailsvc"

    def accepted(self) -> list[Request]:
        """Requests answered 2xx, in arrival order."""
        return [r for r in self.requests if r.status is not None and 200 <= r.status < 300]

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, LOOPBACK, self.port)

    async def stop(self) -> None:
        """Down: new connections are refused, open ones are cut."""
        if self._server is not None:
            self._server.close()
            for writer in list(self._connections):
                writer.close()
            await self._server.wait_closed()
            self._server = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._connections.add(writer)
        try:
            while await self._one_request(reader, writer):
                pass
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            self._connections.discard(writer)
            writer.close()

    async def _one_request(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> bool:
        request_line = await reader.readline()
        if not request_line.strip():
            return False
        headers: dict[str, str] = {}
        while (line := await reader.readline()).strip():
            name, _, value = line.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        body = await reader.readexactly(int(headers.get("content-length", "0")))
        path = request_line.decode("latin-1").split()[1]
        delivery_id = headers.get("webhook-id", "")
        self.in_flight.add(delivery_id)
        status: int | None = None
        try:
            if self.delay:
                await asyncio.sleep(self.delay)
            if reader.at_eof():
                return False  # the sender went away (killed) before the answer
            status = self.status
            answer = b"ok" if status < 300 else b"try again later"
            writer.write(
                f"HTTP/1.1 {status} Whatever\r\nContent-Length: {len(answer)}\r\n"
                "Content-Type: text/plain\r\n\r\n".encode()
                + answer
            )
            await writer.drain()
        except ConnectionError:
            status = None
            raise
        finally:
            self.in_flight.discard(delivery_id)
            self.requests.append(Request(path, headers, body, status))
        return True


def signature_is_valid(secret: str, request: Request) -> bool:
    """The check docs/events.md tells receivers to make (Standard Webhooks), written
    here independently of mailsvc's code."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = (
        f"{request.headers['webhook-id']}.{request.headers['webhook-timestamp']}.".encode()
        + request.body
    )
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    offered = [
        value.partition(",")[2]
        for value in request.headers["webhook-signature"].split()
        if value.startswith("v1,")
    ]
    return any(hmac.compare_digest(expected, candidate) for candidate in offered)
