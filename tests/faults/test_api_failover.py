"""The api process holding IDLE accounts is SIGKILLed while another one runs.

Nothing is cleaned up by the killed process: its leases stay in Redis until their
TTL runs out. The survivor must then own every account and watch it again within
IDLE_LEASE_TTL_SECONDS + 10 s (issue 16's failover target), and mail delivered to
those accounts right after the kill must be synced (the new watcher starts with a
sync of every mailbox).
"""

from __future__ import annotations

import secrets
import signal
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
import redis.asyncio as aioredis

from mailsvc.auth.tokens import TokenCodec
from mailsvc.config import Settings
from mailsvc.kit.lease import Leases
from mailsvc.kit.redis import create_redis
from mailsvc.sync.lease import account_lease_key
from tests.fixtures.app import account_body
from tests.fixtures.dovecot import DovecotServer
from tests.fixtures.net import LOOPBACK, free_port
from tests.fixtures.private_servers import kill_mailsvc, start_mailsvc
from tests.fixtures.processes import service_env, wait_until_serving
from tests.fixtures.smtp_server import SmtpRelay
from tests.fixtures.waiting import eventually

pytestmark = pytest.mark.faults

TENANT = "fault-failover"
ACCOUNTS = 6
LEASE_TTL_SECONDS = 5
# The issue's bound: every account of the killed process watched again within this.
FAILOVER_BOUND_SECONDS = LEASE_TTL_SECONDS + 10


def _owner_pid(owner_id: str | None) -> int | None:
    """The pid in an IDLE owner id (`host:pid:nonce`, `runtime.process_id`)."""
    return None if owner_id is None else int(owner_id.split(":")[-2])


async def test_the_survivor_owns_every_account_within_the_lease_ttl_plus_10_s(
    settings: Settings,
    isolated_database: str,
    isolated_redis: str,
    dovecot: DovecotServer,
    smtp_relay: SmtpRelay,
    tmp_path: Path,
) -> None:
    env = service_env(
        settings,
        database_url=isolated_database,
        redis_url=isolated_redis,
        ca_file=dovecot.ca_cert_path,
        data_dir=tmp_path,
        IDLE_LEASE_TTL_SECONDS=str(LEASE_TTL_SECONDS),
        # The test polls the status of every account; the limiter stays on (it is
        # the first Redis call of a request) but out of the way.
        RATE_LIMIT_REQUESTS_PER_MINUTE="100000",
        RATE_LIMIT_REQUESTS_PER_HOUR="1000000",
        # The default scan interval (5 s): the bound must hold with it, not only with
        # a test's eager one.
    )
    token = TokenCodec(settings).issue(
        subject="test",
        tenants=[TENANT],
        scopes=["accounts:write", "accounts:read", "mail:read"],
        expires_in=600,
    )
    ports = [free_port(), free_port()]
    redis: aioredis.Redis = create_redis(isolated_redis)
    observer = Leases(redis, owner_id="test-observer", ttl_seconds=LEASE_TTL_SECONDS)
    processes = [
        await start_mailsvc(
            "serve", "--host", LOOPBACK, "--port", str(port), env=env,
            log=tmp_path / f"api-{index}.log",
        )
        for index, port in enumerate(ports)
    ]  # fmt: skip
    # First mirrors run in the worker; the failover itself involves the api processes only.
    worker = await start_mailsvc("worker", env=env, log=tmp_path / "worker.log")
    clients = [
        httpx.AsyncClient(
            base_url=f"http://{LOOPBACK}:{port}",
            headers={"Authorization": f"Bearer {token}"},
            timeout=30,
        )
        for port in ports
    ]
    try:
        for client in clients:
            await wait_until_serving(client)
        users = []
        account_ids: list[uuid.UUID] = []
        for _ in range(ACCOUNTS):
            user = dovecot.add_user(f"ff-{secrets.token_hex(4)}", secrets.token_urlsafe(10))
            users.append(user)
            created = await clients[0].post(
                "/api/accounts",
                json=account_body(dovecot, smtp_relay, user),
                params={"verify": "false"},
            )
            assert created.status_code == 201, created.text
            account_ids.append(uuid.UUID(created.json()["id"]))
        keys = [account_lease_key(account_id) for account_id in account_ids]
        pids = {process.pid for process in processes}

        async def owner_pids() -> list[int | None]:
            owners = await observer.owners(keys)
            return [_owner_pid(owners[key]) for key in keys]

        async def shared_and_watched() -> bool:
            # Both hold a share (the fair-share scan), and every account is in IDLE.
            if set(await owner_pids()) != pids:
                return False
            for account_id in account_ids:
                status = await clients[1].get(f"/api/sync/status/{account_id}")
                if not status.json()["idle"]["connected"]:
                    return False
            return True

        await eventually(shared_and_watched, within=90, what="both processes watching")
        victim, survivor = processes
        victim_accounts = [
            (account_id, user)
            for account_id, user, pid in zip(account_ids, users, await owner_pids(), strict=True)
            if pid == victim.pid
        ]
        assert victim_accounts

        victim.send_signal(signal.SIGKILL)
        await victim.wait()
        killed_at = datetime.now(UTC)
        killed = time.monotonic()
        # Mail arriving while nobody watches these accounts.
        for _, user in victim_accounts:
            await dovecot.adeliver(user.username, _message(user.email))

        async def survivor_watches_all() -> bool:
            if set(await owner_pids()) != {survivor.pid}:
                return False
            for account_id, _ in victim_accounts:
                status = (await clients[1].get(f"/api/sync/status/{account_id}")).json()
                since = status["idle"]["since"]
                if not status["idle"]["connected"] or since is None:
                    return False
                if datetime.fromisoformat(since.replace("Z", "+00:00")) < killed_at:
                    return False  # the killed process's status, not expired yet
            return True

        await eventually(
            survivor_watches_all,
            within=FAILOVER_BOUND_SECONDS - (time.monotonic() - killed),
            what="every account watched by the survivor",
        )
        took = time.monotonic() - killed

        async def delivered_mail_synced() -> bool:
            for account_id, _ in victim_accounts:
                page = await clients[1].get(
                    "/api/messages", params={"account_id": str(account_id), "limit": 10}
                )
                if page.status_code != 200 or len(page.json()["items"]) != 1:
                    return False
            return True

        await eventually(delivered_mail_synced, within=30, what="mail of the outage synced")
        assert survivor.returncode is None
        print(f"failover: {len(victim_accounts)} accounts taken over in {took:.1f} s")  # noqa: T201
    finally:
        for client in clients:
            await client.aclose()
        for process in [*processes, worker]:
            await kill_mailsvc(process)
        await redis.aclose()


def _message(address: str) -> bytes:
    return (
        f"From: sender@example.com\r\nTo: {address}\r\nSubject: during the failover\r\n"
        f"Message-ID: <{uuid.uuid4()}@faults.test>\r\n\r\nhello\r\n"
    ).encode()
