"""The outbox survives a hard restart of the api and worker processes between attempts."""

from __future__ import annotations

import asyncio
import secrets
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx

from mailsvc.auth.tokens import TokenCodec
from mailsvc.config import Settings
from tests.fixtures.app import account_body
from tests.fixtures.dovecot import DovecotServer
from tests.fixtures.net import free_port
from tests.fixtures.processes import MAILSVC, service_env, wait_until_serving
from tests.fixtures.smtp_server import SmtpRelay
from tests.fixtures.waiting import eventually

RETRY_SECONDS = 4


@asynccontextmanager
async def _services(env: dict[str, str], port: int, cwd: Path) -> AsyncIterator[None]:
    """`mailsvc serve` and `mailsvc worker`, killed with SIGKILL on the way out."""
    processes = [
        await asyncio.create_subprocess_exec(
            MAILSVC, *args, env=env, cwd=cwd,
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
        )
        for args in (("serve", "--host", "127.0.0.1", "--port", str(port)), ("worker",))
    ]  # fmt: skip
    try:
        yield
    finally:
        for process in processes:
            if process.returncode is None:
                process.send_signal(signal.SIGKILL)
            await process.wait()


async def test_a_retry_due_after_both_processes_died_is_sent_once_they_are_back(
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
        IDLE_ENABLED="false",
        SEND_RETRY_BASE_SECONDS=str(RETRY_SECONDS),
    )
    port = free_port()
    token = TokenCodec(settings).issue(
        subject="test",
        tenants=["restart"],
        scopes=["accounts:write", "mail:read", "mail:send"],
        expires_in=600,
    )
    sender = dovecot.add_user(f"snd-{secrets.token_hex(4)}", secrets.token_urlsafe(10))
    receiver = dovecot.add_user(f"rcv-{secrets.token_hex(4)}", secrets.token_urlsafe(10))
    async with httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{port}", headers={"Authorization": f"Bearer {token}"}
    ) as client:

        async def entry() -> dict[str, Any]:
            response = await client.get(f"/api/outbox/{entry_id}")
            assert response.status_code == 200, response.text
            found: dict[str, Any] = response.json()
            return found

        async with _services(env, port, tmp_path):
            await wait_until_serving(client)
            created = await client.post(
                "/api/accounts",
                json=account_body(dovecot, smtp_relay, sender),
                params={"verify": "false"},
            )
            assert created.status_code == 201, created.text
            smtp_relay.fail_next("451 4.7.1 greylisted, come back later")
            sent = await client.post(
                "/api/send",
                json={
                    "account_id": created.json()["id"],
                    "to": [{"address": receiver.email}],
                    "subject": "survives restarts",
                    "text": "hello",
                },
            )
            assert sent.status_code == 202, sent.text
            entry_id = sent.json()["id"]

            async def deferred() -> bool:
                current = await entry()
                return (current["status"], current["attempts"]) == ("queued", 1)

            await eventually(deferred, within=RETRY_SECONDS / 2, what="first attempt deferred")
        # Both processes are gone (SIGKILL) before the retry is due.
        assert (await entry_after_restart(env, port, tmp_path, client, entry)) == ("sent", 2)
    message_id = sent.json()["message_id"].encode()
    assert sum(message_id in m.data for m in smtp_relay.received) == 1


async def entry_after_restart(
    env: dict[str, str],
    port: int,
    cwd: Path,
    client: httpx.AsyncClient,
    entry: Any,
) -> tuple[str, int]:
    async with _services(env, port, cwd):

        async def finished() -> bool:
            try:
                return bool((await entry())["status"] in {"sent", "failed"})
            except httpx.TransportError:
                return False

        await eventually(finished, within=60, what="retry after the restart")
        current = await entry()
        return current["status"], current["attempts"]
