"""`mailsvc serve --workers 2` as real processes beside a second `mailsvc serve`.

Both workers of the first are whole api processes: each holds a share of the IDLE
accounts. A SIGTERM to its parent drains them: open SSE streams end cleanly with the
position to resume from, a request in flight still completes, the parent exits 0
within SHUTDOWN_GRACE_SECONDS leaving no worker behind, and the other `mailsvc serve`
holds every account within the lease TTL.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import signal
import uuid
from pathlib import Path

import httpx
import redis.asyncio as aioredis

from mailsvc.auth.tokens import TokenCodec
from mailsvc.config import Settings
from mailsvc.kit.lease import Leases
from mailsvc.kit.redis import create_redis
from mailsvc.sync.lease import account_lease_key
from tests.fixtures.app import account_body
from tests.fixtures.dovecot import DovecotServer
from tests.fixtures.net import LOOPBACK, free_port
from tests.fixtures.processes import MAILSVC, run_mailsvc, service_env, wait_until_serving
from tests.fixtures.smtp_server import SmtpRelay
from tests.fixtures.sse import Frame, arrived, collect_frames
from tests.fixtures.waiting import eventually

TENANT = "serve-workers"
LEASE_TTL_SECONDS = 5
GRACE_SECONDS = 10
ACCOUNTS = 4


def _children(pid: int) -> set[int]:
    """The processes whose parent is `pid`."""
    found: set[int] = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # "pid (comm) state ppid ...": comm may hold spaces and parentheses.
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            found.add(int(entry.name))
    return found


def _server_workers(pid: int) -> set[int]:
    """The server processes uvicorn's supervisor `pid` runs (not its resource tracker)."""
    workers: set[int] = set()
    for child in _children(pid):
        try:
            cmdline = Path(f"/proc/{child}/cmdline").read_bytes()
        except OSError:
            continue
        if b"spawn_main" in cmdline:
            workers.add(child)
    return workers


def _alive(pid: int) -> bool:
    return Path(f"/proc/{pid}").exists()


def _owner_pid(owner_id: str | None) -> int | None:
    """The pid in an IDLE owner id (`host:pid:nonce`, `runtime.process_id`)."""
    return None if owner_id is None else int(owner_id.split(":")[-2])


async def _start(*args: str, env: dict[str, str], log: Path) -> asyncio.subprocess.Process:
    with log.open("wb") as output:
        return await asyncio.create_subprocess_exec(
            MAILSVC, *args, env=env, cwd=log.parent, stdout=output, stderr=output
        )


async def _stop(process: asyncio.subprocess.Process) -> None:
    if process.returncode is None:
        process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(process.wait(), 30)
        except TimeoutError:
            process.kill()
            await process.wait()


async def test_sigterm_drains_both_workers_and_hands_their_accounts_over(
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
        SHUTDOWN_GRACE_SECONDS=str(GRACE_SECONDS),
    )
    codec = TokenCodec(settings)
    token = codec.issue(
        subject="test", tenants=[TENANT], scopes=["accounts:write", "mail:read"], expires_in=600
    )
    group_port, survivor_port = free_port(), free_port()
    group_url = f"http://{LOOPBACK}:{group_port}"
    redis: aioredis.Redis = create_redis(isolated_redis)
    observer = Leases(redis, owner_id="test-observer", ttl_seconds=LEASE_TTL_SECONDS)
    processes: list[asyncio.subprocess.Process] = []
    workers: set[int] = set()
    try:
        group = await _start(
            "serve", "--host", LOOPBACK, "--port", str(group_port), "--workers", "2",
            env=env, log=tmp_path / "group.log",
        )  # fmt: skip
        processes.append(group)
        async with httpx.AsyncClient(
            base_url=group_url, headers={"Authorization": f"Bearer {token}"}
        ) as client:
            await wait_until_serving(client, within=60)

            async def two_workers() -> bool:
                return len(_server_workers(group.pid)) == 2

            await eventually(two_workers, within=30, what="two server processes")
            workers = _server_workers(group.pid)
            account_ids: list[uuid.UUID] = []
            for _ in range(ACCOUNTS):
                user = dovecot.add_user(f"serve-{secrets.token_hex(4)}", secrets.token_urlsafe(10))
                created = await client.post(
                    "/api/accounts",
                    json=account_body(dovecot, smtp_relay, user),
                    params={"verify": "false"},
                )
                assert created.status_code == 201, created.text
                account_ids.append(uuid.UUID(created.json()["id"]))
        keys = [account_lease_key(account_id) for account_id in account_ids]

        async def owner_pids() -> list[int | None]:
            owners = await observer.owners(keys)
            return [_owner_pid(owners[key]) for key in keys]

        async def both_workers_watch() -> bool:
            pids = await owner_pids()
            return None not in pids and set(pids) == workers

        # Each worker runs its own lifespan, runtime and IDLE supervisor.
        await eventually(both_workers_watch, within=60, what="both workers holding accounts")

        survivor = await _start(
            "serve", "--host", LOOPBACK, "--port", str(survivor_port),
            env=env, log=tmp_path / "survivor.log",
        )  # fmt: skip
        processes.append(survivor)
        async with httpx.AsyncClient(base_url=f"http://{LOOPBACK}:{survivor_port}") as client:
            await wait_until_serving(client, within=60)
        api_key = (await run_mailsvc("apikey", "create", "--tenant", TENANT, env=env)).stdout

        streams: list[list[Frame]] = [[], []]
        reading = [
            asyncio.create_task(
                collect_frames(group_url, {"Authorization": f"Bearer {token}"}, frames)
            )
            for frames in streams
        ]
        for frames in streams:
            await eventually(arrived(frames), within=30, what="SSE stream open")

        # A login whose body is not sent yet: `100 Continue` proves a worker has the
        # request and waits in the endpoint for its body.
        body = json.dumps({"api_key": api_key.strip()}).encode()
        reader, writer = await asyncio.open_connection(LOOPBACK, group_port)
        writer.write(
            b"POST /auth/login HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\nExpect: 100-continue\r\n\r\n" % (LOOPBACK.encode(), len(body))
        )
        await writer.drain()
        interim = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
        assert interim.startswith(b"HTTP/1.1 100 "), interim

        loop = asyncio.get_running_loop()
        group.send_signal(signal.SIGTERM)
        deadline = loop.time() + GRACE_SECONDS

        # The streams end while the login is still held open: drained, not cut off
        # when the grace period runs out.
        await asyncio.wait_for(asyncio.gather(*reading), GRACE_SECONDS)
        for frames in streams:
            opening, *_, farewell = frames
            assert opening == {"retry": "2000"}
            assert farewell.keys() == {"", "id", "retry"}, farewell
            assert farewell[""] == "server shutting down, reconnect"

        writer.write(body)
        await writer.drain()
        response = await asyncio.wait_for(reader.read(), GRACE_SECONDS)
        writer.close()
        head, _, payload = response.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200 "), response
        assert json.loads(payload)["access_token"]

        await asyncio.wait_for(group.wait(), max(0.0, deadline - loop.time()))
        assert group.returncode == 0
        assert not [pid for pid in workers if _alive(pid)]

        async def survivor_holds_all() -> bool:
            return set(await owner_pids()) == {survivor.pid}

        await eventually(
            survivor_holds_all, within=LEASE_TTL_SECONDS, what="every account with the survivor"
        )
    finally:
        for process in processes:
            await _stop(process)
        for pid in workers:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
        await redis.aclose()
