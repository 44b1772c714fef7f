"""Two real `mailsvc serve` processes sharing one Redis and one database: every account
is watched by exactly one of them, and stopping one hands its accounts to the other."""

from __future__ import annotations

import asyncio
import secrets
import signal
import uuid
from pathlib import Path

import httpx
import redis.asyncio as aioredis

from mailsvc.auth.tokens import TokenCodec
from mailsvc.config import Settings
from mailsvc.kit.redis import create_redis
from mailsvc.sync.idle_status import idle_status
from mailsvc.sync.lease import account_lease_key
from tests.fixtures.app import account_body
from tests.fixtures.dovecot import DovecotServer
from tests.fixtures.net import free_port
from tests.fixtures.processes import MAILSVC, service_env, wait_until_serving
from tests.fixtures.smtp_server import SmtpRelay
from tests.fixtures.waiting import eventually

LEASE_TTL_SECONDS = 3


async def test_two_api_processes_split_the_accounts_and_hand_them_over(
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
        IDLE_SCAN_INTERVAL_SECONDS="0.5",
    )
    ports = [free_port(), free_port()]
    processes: list[asyncio.subprocess.Process] = []
    redis: aioredis.Redis = create_redis(isolated_redis)
    try:
        for port in ports:
            processes.append(
                await asyncio.create_subprocess_exec(
                    MAILSVC,
                    "serve",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(port),
                    env=env,
                    cwd=tmp_path,
                    stdout=asyncio.subprocess.DEVNULL,
                    stderr=asyncio.subprocess.DEVNULL,
                )
            )
        token = TokenCodec(settings).issue(
            subject="test", tenants=["procs"], scopes=["accounts:write"], expires_in=600
        )
        account_ids: list[uuid.UUID] = []
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{ports[0]}", headers={"Authorization": f"Bearer {token}"}
        ) as client:
            await wait_until_serving(client, within=60)
            for _ in range(4):
                user = dovecot.add_user(f"procs-{secrets.token_hex(4)}", secrets.token_urlsafe(10))
                created = await client.post(
                    "/api/accounts",
                    json=account_body(dovecot, smtp_relay, user),
                    params={"verify": "false"},
                )
                assert created.status_code == 201, created.text
                account_ids.append(uuid.UUID(created.json()["id"]))

        pids = {str(process.pid) for process in processes}

        async def owners() -> dict[uuid.UUID, str | None]:
            found: dict[uuid.UUID, str | None] = {}
            for account_id in account_ids:
                status = await idle_status(redis, account_id)
                lease = await redis.get(account_lease_key(account_id))
                # Watched means: leased, and the lease holder reports a live connection.
                if status is None or lease is None or status["owner"] != lease.decode():
                    found[account_id] = None
                else:
                    found[account_id] = status["owner"].split(":")[-2]
            return found

        async def shared() -> bool:
            current = await owners()
            return None not in current.values() and set(current.values()) == pids

        await eventually(shared, within=30, what="both processes watching, each account once")

        survivor, stopped = processes
        stopped.send_signal(signal.SIGTERM)
        await asyncio.wait_for(stopped.wait(), 30)

        async def handed_over() -> bool:
            return set((await owners()).values()) == {str(survivor.pid)}

        await eventually(
            handed_over, within=LEASE_TTL_SECONDS * 3, what="survivor watching every account"
        )
    finally:
        for process in processes:
            if process.returncode is None:
                process.send_signal(signal.SIGTERM)
                try:
                    await asyncio.wait_for(process.wait(), 30)
                except TimeoutError:
                    process.kill()
                    await process.wait()
        await redis.aclose()
