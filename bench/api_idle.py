"""Accounts held in IDLE for bench/api.py: Dovecot users registered through the API,
and the wait until the serving processes watch every one of them.
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from api_load import group_rss_mib
from tests.fixtures.dovecot import DovecotServer, TestMailUser

from search import MailsvcServer, Servers, mint_token, serve_env, start_process, stop_process

IDLE_TENANT = "idle"
IDLE_TIMEOUT_SECONDS = 600.0
INOTIFY_INSTANCES_PATH = Path("/proc/sys/fs/inotify/max_user_instances")
INOTIFY_INSTANCES = 4096
# Each account watches INBOX and Sent (two IMAP processes in Dovecot); the fixture's
# default_process_limit of 1,024 would refuse the last ones.
DOVECOT_EXTRA_CONFIG = "service imap {\n  process_limit = 4096\n}\n"


@dataclass
class IdleSetup:
    """The accounts held in IDLE, and what it took."""

    accounts: list[str] = field(default_factory=list)
    register_seconds: float = 0.0
    all_idle_seconds: float = 0.0
    """From the first registration until every account was synced and in IDLE."""
    rss_before_mib: float = 0.0
    rss_idle_mib: float = 0.0
    """The serving processes' RSS before the accounts, and with all of them in IDLE."""
    imap_connections: int = 0
    """Established client connections to Dovecot's IMAP port once all were in IDLE."""
    pauses: str = ""
    """What the serving process that answered `/metrics` after the measurements says
    of its pauses (full collections, event loop lag); see `describe_pauses`."""


def describe_pauses(metrics: str) -> str:
    """Full garbage collections (count, total and mean seconds) and event-loop samples
    later than 25 / 100 ms, from one `/metrics` scrape of a serving process."""
    values: dict[str, float] = {}
    for line in metrics.splitlines():
        if line.startswith(("mailsvc_gc_pause_seconds", "mailsvc_event_loop_lag_seconds")):
            series, _, value = line.rpartition(" ")
            values[series] = float(value)
    full = values.get('mailsvc_gc_pause_seconds_count{generation="2"}', 0.0)
    full_seconds = values.get('mailsvc_gc_pause_seconds_sum{generation="2"}', 0.0)
    samples = values.get("mailsvc_event_loop_lag_seconds_count", 0.0)
    late = {
        bound: samples - values.get(f'mailsvc_event_loop_lag_seconds_bucket{{le="{bound}"}}', 0.0)
        for bound in ("0.025", "0.1")
    }
    mean_ms = full_seconds / full * 1000 if full else 0.0
    return (
        f"{full:.0f} full collections, {full_seconds * 1000:.0f} ms in all ({mean_ms:.1f} ms "
        f"each); of {samples:.0f} loop samples {late['0.025']:.0f} ran > 25 ms late, "
        f"{late['0.1']:.0f} > 100 ms"
    )


def imap_connections(port: int) -> int:
    """Established TCP connections to `port` on loopback, from the client side (the
    server's own side has `port` as its local port)."""
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            # remote address "HEX_IP:HEX_PORT", state 01 = ESTABLISHED
            if int(fields[2].rpartition(":")[2], 16) == port and fields[3] == "01":
                count += 1
    return count


def raise_inotify_limit() -> str:
    """At least INOTIFY_INSTANCES inotify instances per user, when allowed; what it is."""
    try:
        current = int(INOTIFY_INSTANCES_PATH.read_text())
        if current < INOTIFY_INSTANCES:
            INOTIFY_INSTANCES_PATH.write_text(f"{INOTIFY_INSTANCES}\n")
            return f"raised from {current} to {INOTIFY_INSTANCES}"
        return str(current)
    except (OSError, ValueError) as exc:
        return f"unchanged ({exc}): past it Dovecot polls every 5 s instead of pushing"


async def register_accounts(
    url: str,
    token: str,
    dovecot: DovecotServer,
    count: int,
    *,
    prefix: str = "idle",
    sync_options: dict[str, object] | None = None,
) -> list[str]:
    """`count` Dovecot users, each registered as an account through the API."""
    users = [
        dovecot.add_user(f"{prefix}{index:05d}", secrets.token_urlsafe(12))
        for index in range(count)
    ]
    limit = asyncio.Semaphore(16)

    async def register(client: httpx.AsyncClient, user: TestMailUser) -> str:
        server = {
            "host": "127.0.0.1", "security": "none",
            "username": user.username, "password": user.password,
        }  # fmt: skip
        async with limit:
            created = await client.post(
                "/api/accounts",
                params={"verify": "false"},
                json={
                    "email": user.email,
                    "imap": {**server, "port": dovecot.imap_port},
                    "smtp": {**server, "port": 25},
                    **({"sync_options": sync_options} if sync_options else {}),
                },
            )
        if created.status_code != 201:
            raise RuntimeError(f"POST /api/accounts: {created.status_code} {created.text[:300]}")
        return str(created.json()["id"])

    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=60) as client:
        return list(await asyncio.gather(*(register(client, user) for user in users)))


async def not_idle(url: str, token: str, accounts: Sequence[str]) -> list[str]:
    """The accounts whose sync status is not `connected` with IDLE connected."""
    limit = asyncio.Semaphore(16)
    headers = {"Authorization": f"Bearer {token}"}

    async def waiting(client: httpx.AsyncClient, account_id: str) -> bool:
        async with limit:
            response = await client.get(f"/api/sync/status/{account_id}")
        response.raise_for_status()
        status = response.json()
        return not (status["state"] == "connected" and status["idle"]["connected"])

    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=60) as client:
        flags = await asyncio.gather(*(waiting(client, account) for account in accounts))
    return [account for account, flag in zip(accounts, flags, strict=True) if flag]


def hold_idle_accounts(
    args: argparse.Namespace,
    servers: Servers,
    server: MailsvcServer,
    jwt_secret: str,
    overrides: dict[str, str],
    dovecot: DovecotServer,
    workdir: Path,
) -> IdleSetup:
    """Register the accounts with a worker running, and wait until all are IDLE."""
    setup = IdleSetup()
    token = mint_token(jwt_secret, IDLE_TENANT)
    setup.rss_before_mib = group_rss_mib(server.process.pid)
    worker = start_process(
        [sys.executable, "-m", "mailsvc", "worker"],
        env=serve_env(servers, jwt_secret, **overrides),
        cwd=workdir,
        log_path=workdir / "worker-idle.log",
    )
    try:
        started = time.perf_counter()
        setup.accounts = asyncio.run(
            register_accounts(server.url, token, dovecot, args.idle_accounts)
        )
        setup.register_seconds = time.perf_counter() - started
        print(
            f"{len(setup.accounts)} accounts registered in {setup.register_seconds:.1f} s; "
            "waiting until every one is synced and in IDLE ..."
        )
        waiting = list(setup.accounts)
        reported = time.monotonic()
        while waiting:
            if time.perf_counter() - started > IDLE_TIMEOUT_SECONDS:
                raise RuntimeError(
                    f"{len(waiting)} accounts not in IDLE after {IDLE_TIMEOUT_SECONDS:.0f} s"
                )
            time.sleep(2)
            waiting = asyncio.run(not_idle(server.url, token, waiting))
            if time.monotonic() - reported > 10:
                print(f"  {len(setup.accounts) - len(waiting)} of {len(setup.accounts)} in IDLE")
                reported = time.monotonic()
        setup.all_idle_seconds = time.perf_counter() - started
        setup.imap_connections = imap_connections(dovecot.imap_port)
    finally:
        stop_process(worker)
    time.sleep(3)  # the last syncs' after-effects settle
    setup.rss_idle_mib = group_rss_mib(server.process.pid)
    return setup
