"""Events benchmark (issue 6): a mail arriving in Dovecot, to a webhook and to an SSE client.

One run, everything on loopback and started here (and stopped again, also on Ctrl-C):

1. a private Dovecot (tests/fixtures/dovecot.py) with one user, PostgreSQL and Redis
   (embedded, or the servers of DATABASE_URL / REDIS_URL; a fresh migrated database);
2. `mailsvc serve` (IMAP IDLE on) and `mailsvc worker`, as deployed, sharing the two
   cores with everything else;
3. a webhook receiver (a minimal HTTP/1.1 server in this process) subscribed to
   `message.created`, and an SSE client on `GET /api/events?types=message.created`;
4. the user's account registered through the API, and once its IDLE watcher is
   connected, `--deliveries` messages (100 by default) delivered one at a time over
   LMTP, each with its own subject. For each, the time from just before the LMTP
   delivery to the webhook request that carries it, and to the SSE event, on this
   process's monotonic clock. The next delivery starts once both have arrived.

The path measured: LMTP -> Dovecot -> IDLE notification -> the api process's watcher
syncs the mailbox (fetch, parse, store, change row + NOTIFY) -> (a) the SSE stream
reads the feed; (b) the worker fans the change out to the webhook and an arq job POSTs
it. Targets: p95 under 1 s for both.

Run: `.venv/bin/python bench/events.py [--deliveries 100] [--json FILE]`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import secrets
import shutil
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.policy import SMTP
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx
from harness import Results, describe_ms, machine_basics, percentile, run_main, summary_ms
from tests.fixtures.dovecot import DovecotServer, deliver_lmtp

from mailsvc.config import generate_encryption_key
from search import TENANT, mint_token, serve_env, start_mailsvc, start_process, start_servers

TARGET_SECONDS = 1.0
ARRIVAL_TIMEOUT_SECONDS = 15.0


@dataclass
class Arrivals:
    """When each probe's subject showed up on each path (monotonic seconds)."""

    webhook: dict[str, float] = field(default_factory=dict)
    sse: dict[str, float] = field(default_factory=dict)
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def record(self, path: dict[str, float], subject: str | None) -> None:
        if subject is not None and subject not in path:
            path[subject] = time.monotonic()
            self.changed.set()


class WebhookReceiver:
    """A minimal keep-alive HTTP/1.1 server that answers 204 and notes each event."""

    def __init__(self, arrivals: Arrivals) -> None:
        self._arrivals = arrivals
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()
        self.port = 0
        self.requests = 0

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for connection in self._connections:
            connection.cancel()
        await asyncio.gather(*self._connections, return_exceptions=True)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n")[1:]:
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value.strip())
                body = await reader.readexactly(length)
                self.requests += 1
                with contextlib.suppress(ValueError, KeyError, TypeError):
                    event = json.loads(body)
                    self._arrivals.record(self._arrivals.webhook, event["data"].get("subject"))
                writer.write(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass
        finally:
            self._connections.discard(task)
            writer.close()


async def follow_sse(client: httpx.AsyncClient, arrivals: Arrivals, opened: asyncio.Event) -> None:
    async with client.stream(
        "GET", "/api/events", params={"types": "message.created"}, timeout=None
    ) as response:
        response.raise_for_status()
        opened.set()
        async for line in response.aiter_lines():
            if line.startswith("data: "):
                event = json.loads(line[6:])
                arrivals.record(arrivals.sse, event["data"].get("subject"))


def probe(index: int, token: str) -> tuple[str, bytes]:
    subject = f"Event probe {index} {token}"
    message = EmailMessage(policy=SMTP)
    message["From"] = "Probe <probe@example.test>"
    message["To"] = "Bench <bench@example.test>"
    message["Subject"] = subject
    message["Message-ID"] = f"<{uuid.uuid4().hex}@example.test>"
    message.set_content(f"Delivered while mailsvc was watching (probe {index}).\n")
    return subject, message.as_bytes()


async def wait_for(check: Any, *, within: float, what: str) -> None:
    deadline = time.monotonic() + within
    while not await check():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what}: not within {within:.0f} s")
        await asyncio.sleep(0.1)


async def measure(
    args: argparse.Namespace, url: str, token: str, dovecot: DovecotServer, results: Results
) -> None:
    user = dovecot.add_user("bench", secrets.token_urlsafe(12))
    arrivals = Arrivals()
    receiver = WebhookReceiver(arrivals)
    await receiver.start()
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=30) as client:
        created = await client.post(
            "/api/accounts",
            params={"verify": "false"},
            json={
                "email": user.email,
                "imap": {"host": "127.0.0.1", "port": dovecot.imap_port, "security": "none",
                         "username": user.username, "password": user.password},
                "smtp": {"host": "127.0.0.1", "port": 25, "security": "none",
                         "username": user.username, "password": user.password},
            },
        )  # fmt: skip
        created.raise_for_status()
        account_id = created.json()["id"]
        hook = await client.post(
            "/api/webhooks",
            json={
                "url": f"http://127.0.0.1:{receiver.port}/hook",
                "event_types": ["message.created"],
            },
        )
        hook.raise_for_status()
        opened = asyncio.Event()
        sse = asyncio.create_task(follow_sse(client, arrivals, opened))
        await asyncio.wait_for(opened.wait(), 30)

        async def watching() -> bool:
            status = (await client.get(f"/api/sync/status/{account_id}")).json()
            return bool(status["idle"]["connected"])

        await wait_for(watching, within=60, what="IDLE watcher connected")
        print("account synced, IDLE connected, webhook and SSE client ready")

        run = secrets.token_hex(3)
        webhook_seconds: list[float] = []
        sse_seconds: list[float] = []
        for index in range(-3, args.deliveries):  # three unrecorded warm-up probes
            subject, raw = probe(index, run)
            sent = time.monotonic()
            await asyncio.to_thread(
                deliver_lmtp,
                host=dovecot.host,
                port=dovecot.lmtp_port,
                mail_from="probe@example.test",
                recipients=[user.email],
                message=raw,
            )
            while subject not in arrivals.webhook or subject not in arrivals.sse:
                arrivals.changed.clear()
                remaining = sent + ARRIVAL_TIMEOUT_SECONDS - time.monotonic()
                if remaining <= 0:
                    raise RuntimeError(f"probe {index} did not arrive on both paths")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(arrivals.changed.wait(), remaining)
            if index >= 0:
                webhook_seconds.append(arrivals.webhook[subject] - sent)
                sse_seconds.append(arrivals.sse[subject] - sent)
        sse.cancel()
        await asyncio.gather(sse, return_exceptions=True)
    await receiver.stop()

    for name, seconds in (("webhook", webhook_seconds), ("SSE", sse_seconds)):
        p95 = percentile(seconds, 0.95)
        results.add(
            f"LMTP delivery -> {name} ({len(seconds)} deliveries)",
            describe_ms(seconds),
            target="p95 < 1 s",
            met=p95 < TARGET_SECONDS,
        )
    results.data["webhook"] = summary_ms(webhook_seconds)
    results.data["sse"] = summary_ms(sse_seconds)
    results.data["webhook_requests"] = receiver.requests


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--deliveries", type=int, default=100, help="recorded deliveries")
    parser.add_argument("--json", type=Path, help="also write every figure to this file")


def run_bench(args: argparse.Namespace, stack: contextlib.ExitStack) -> Results:
    results = Results()
    results.data["command"] = " ".join([".venv/bin/python", "bench/events.py", *sys.argv[1:]])
    results.data["machine"] = machine_basics()
    workdir = Path(tempfile.mkdtemp(prefix="mailsvc-bench-events-"))
    stack.callback(shutil.rmtree, workdir, ignore_errors=True)
    started = time.perf_counter()
    dovecot = DovecotServer()
    dovecot.start()
    stack.callback(dovecot.stop)
    servers = start_servers(workdir, stack)
    jwt_secret = secrets.token_urlsafe(48)
    overrides = {
        "ENCRYPTION_KEY": generate_encryption_key(),
        "IDLE_ENABLED": "true",
        "ALLOW_PRIVATE_HOSTS": "true",
    }
    server = start_mailsvc(servers, jwt_secret, workdir, **overrides)
    start_process(
        [sys.executable, "-m", "mailsvc", "worker"],
        env=serve_env(servers, jwt_secret, **overrides),
        cwd=workdir,
        log_path=workdir / "worker.log",
    )
    print(f"Dovecot, PostgreSQL, Redis, mailsvc serve and worker up in "
          f"{time.perf_counter() - started:.1f} s")  # fmt: skip
    asyncio.run(measure(args, server.url, mint_token(jwt_secret, TENANT), dovecot, results))
    return results


if __name__ == "__main__":
    run_main(__doc__.split("\n\n")[0], add_arguments, run_bench)
