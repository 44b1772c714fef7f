"""Dovecot restarted under 1,000 accounts in IDLE: the supervisor reconnects them all,
spread out in time, and syncs the mail that arrived meanwhile.

A private Dovecot (its login service limited like a stock install's, see
`DOVECOT_LIMITS`) holds 1,000 accounts watched by one `IdleSupervisor` running in
this process against the app's database. Dovecot is killed (every process at once,
as in a crash: the connections close without a BYE) and started again ~5 s later on
the same ports; while it is down, mail is dropped straight into the
Maildirs of some accounts, and right after it is back more mail arrives over LMTP
for others. Every account must be in IDLE again within 60 s, every message must be
stored, and the reconnects must be spread: Dovecot logs every connection its login
service handles (with microseconds), so the test counts them per 100 ms and checks
that the login service never ran out of processes. Two things pace the reconnects:
the backoff's full jitter (`sync/idle_watch.py`, `backoff_delay`) and the per-process
limit on watchers connecting at once (`MAX_CONNECTING_WATCHERS`).

Each account watches and mirrors INBOX only (`sync_options`): the default INBOX +
Sent would double the IMAP connections (2,000 imap processes in Dovecot) and the
catch-up syncs, which does not fit the test's time on a 2-core machine and adds
nothing to what is measured.
"""

import asyncio
import json
import logging
import os
import re
import secrets
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis
from fastapi import FastAPI
from sqlalchemy import func, select

from mailsvc.models import Message
from mailsvc.runtime import Runtime
from mailsvc.sync.engine import SyncEngine
from mailsvc.sync.idle import IdleSupervisor
from mailsvc.sync.idle_status import idle_status_key
from tests.fixtures import dovecot as dovecot_fixture
from tests.fixtures.app import remember_secret
from tests.fixtures.dovecot import MAIL_GID, MAIL_UID, DovecotServer, TestMailUser
from tests.fixtures.idle import SupervisorFactory
from tests.fixtures.waiting import eventually

log = logging.getLogger(__name__)

ACCOUNTS = 1000
# Mail dropped into Maildirs while Dovecot is down / delivered over LMTP once it is up.
WHILE_DOWN = 100
AFTER_RESTART = 100
DOWN_SECONDS = 5.0
BACK_IN_IDLE_WITHIN = 60.0
STORED_WITHIN = 90.0

# The login service as a stock Dovecot 2.3 runs it: `default_process_limit = 100`
# and one process per connection until login (`service_count = 1`). Past 100
# connections in login at once the master stops accepting and logs
# "process_limit (100) reached, client connections are being dropped". The imap
# service must hold every IDLE session (one process each). Timestamps with
# microseconds so connections can be counted per 100 ms.
LOGIN_PROCESS_LIMIT = 100
DOVECOT_LIMITS = f"""
log_timestamp = "%Y-%m-%d %H:%M:%S.%{{usecs}} "
service imap-login {{
  process_limit = {LOGIN_PROCESS_LIMIT}
}}
service imap {{
  process_limit = 4096
}}
"""
# Far below "all 1,000 at once": the jitter must spread them.
MAX_CONNECTIONS_PER_100MS = 50
MIN_RECONNECT_SPREAD_SECONDS = 2.0

_LOG_LINE = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{6}) (\S+): (\w+): (.*)$")


class RestartableDovecot(DovecotServer):
    """The fixture's Dovecot, stopped and started again with its mail, config and ports."""

    def halt(self) -> None:
        """Stop every Dovecot process at once, as a crash would (no BYE reaches the
        clients: their connections just close); keep the files."""
        process = self._process
        assert process is not None, "Dovecot is not running"
        self._process = None
        dovecot_fixture._terminate(process)
        if self._finalizer is not None:
            self._finalizer.detach()

    def resume(self) -> None:
        """Start the master again from the same config (same ports)."""
        assert self._process is None, "Dovecot is running"
        if not self._spawn_and_wait(retry_port_clash=False):
            raise dovecot_fixture.DovecotError("a port was taken while Dovecot was down")


def _message(subject: str) -> bytes:
    message = EmailMessage()
    message["From"] = "Sender <sender@example.test>"
    message["To"] = "Recipient <rcpt@example.test>"
    message["Subject"] = subject
    message["Message-ID"] = f"<{secrets.token_hex(8)}@example.test>"
    message["Date"] = "Sat, 05 Dec 2026 12:00:00 +0000"
    message.set_content("Arrived around a Dovecot restart.\n")
    return message.as_bytes()


def _drop_into_maildir(server: DovecotServer, user: TestMailUser, raw: bytes) -> None:
    """Deliver as an MTA writing the Maildir would, without Dovecot running."""
    maildir = server.mail_root / user.username / "Maildir"
    for sub in ("tmp", "new", "cur"):
        (maildir / sub).mkdir(parents=True, exist_ok=True)
    for path in (maildir, maildir / "tmp", maildir / "new", maildir / "cur"):
        os.chown(path, MAIL_UID, MAIL_GID)
    name = f"{time.time_ns()}.{secrets.token_hex(6)}.mailsvc-test"
    temporary = maildir / "tmp" / name
    temporary.write_bytes(raw)
    os.chown(temporary, MAIL_UID, MAIL_GID)
    temporary.rename(maildir / "new" / name)


def _log_events(path: Path, *, since: datetime) -> list[tuple[datetime, str, str, str]]:
    """(time, service, level, text) of Dovecot's log lines from `since` on (local time)."""
    events = []
    for line in path.read_text(errors="replace").splitlines():
        match = _LOG_LINE.match(line)
        if match is None:
            continue
        at = datetime.strptime(match[1], "%Y-%m-%d %H:%M:%S.%f")
        if at >= since:
            events.append((at, match[2], match[3], match[4]))
    return events


def _per_100ms(times: list[datetime]) -> Counter[int]:
    return Counter(int(t.timestamp() * 10) for t in times)


@pytest.fixture
def private_dovecot() -> Iterator[RestartableDovecot]:
    server = RestartableDovecot(extra_config=DOVECOT_LIMITS)
    server.start()
    try:
        yield server
    finally:
        if server._process is None:
            # Halted by the test and never resumed: start it so `stop` can clean up.
            server.resume()
        server.stop()


@pytest.fixture
async def supervisor(supervisors: SupervisorFactory) -> IdleSupervisor:
    """One supervisor for this test's tenant, as one api process runs it (not started)."""
    return supervisors(
        started=False,
        idle_lease_ttl_seconds=10.0,
        idle_scan_interval_seconds=0.5,
        mail_connect_timeout_seconds=15.0,
    )


async def _register(
    client: httpx.AsyncClient, auth: dict[str, str], server: DovecotServer, count: int
) -> list[tuple[uuid.UUID, TestMailUser]]:
    users = [server.add_user(f"r{index:04d}", secrets.token_urlsafe(9)) for index in range(count)]
    limit = asyncio.Semaphore(16)

    async def register(user: TestMailUser) -> tuple[uuid.UUID, TestMailUser]:
        remember_secret(user.password)
        login = {
            "host": server.host, "security": "none",
            "username": user.username, "password": user.password,
        }  # fmt: skip
        async with limit:
            response = await client.post(
                "/api/accounts",
                json={
                    "email": user.email,
                    "imap": {**login, "port": server.imap_port},
                    "smtp": {**login, "port": 25},
                    "sync_options": {"include_mailboxes": ["INBOX"], "idle_mailboxes": ["INBOX"]},
                },
                headers=auth,
                params={"verify": "false"},
            )
        assert response.status_code == 201, response.text
        return uuid.UUID(response.json()["id"]), user

    return list(await asyncio.gather(*(register(user) for user in users)))


async def _connected_since(
    redis: aioredis.Redis, account_ids: list[uuid.UUID], since: datetime
) -> int:
    """How many of the accounts are in IDLE on connections made after `since`."""
    values = await redis.mget([idle_status_key(account_id) for account_id in account_ids])
    count = 0
    for value in values:
        if value is None:
            continue
        status: dict[str, Any] = json.loads(value)
        if datetime.fromisoformat(status["connected_at"]) > since:
            count += 1
    return count


async def test_all_accounts_reconnect_spread_out_and_sync_after_a_dovecot_restart(
    app: FastAPI,
    client: httpx.AsyncClient,
    auth: dict[str, str],
    tenant_id: str,
    engine: SyncEngine,
    redis: aioredis.Redis,
    private_dovecot: RestartableDovecot,
    supervisor: IdleSupervisor,
) -> None:
    state: Runtime = app.state.mailsvc
    server = private_dovecot
    clock = time.monotonic()
    accounts = await _register(client, auth, server, ACCOUNTS)
    log.info("registered in %.1f s", time.monotonic() - clock)
    account_ids = [account_id for account_id, _ in accounts]
    # Mirrored once, as the worker's first job would: a watcher then catches up by
    # itself after every reconnect.
    limit = asyncio.Semaphore(16)

    async def mirror(account_id: uuid.UUID) -> None:
        async with limit:
            await engine.sync_account(tenant_id, account_id)

    await asyncio.gather(*(mirror(account_id) for account_id in account_ids))
    log.info("mirrored at %.1f s", time.monotonic() - clock)

    started = datetime.now(UTC)
    supervisor.start()

    async def all_watching_since(moment: datetime) -> bool:
        return await _connected_since(redis, account_ids, moment) == ACCOUNTS

    await eventually(lambda: all_watching_since(started), within=120, what="all in IDLE")
    log.info("all in IDLE at %.1f s", time.monotonic() - clock)

    # -- the restart ---------------------------------------------------------------
    down_at = datetime.now(UTC)
    server.halt()
    sample = accounts[: WHILE_DOWN + AFTER_RESTART]
    subjects = {account_id: f"Restart {secrets.token_hex(6)}" for account_id, _ in sample}
    for account_id, user in sample[:WHILE_DOWN]:
        _drop_into_maildir(server, user, _message(subjects[account_id]))
    await asyncio.sleep(DOWN_SECONDS)
    # Dovecot's log times are local wall-clock times without a zone.
    up_at_local = datetime.now()
    up_at = datetime.now(UTC)
    server.resume()
    delivering = asyncio.Semaphore(4)

    async def deliver(user: TestMailUser, subject: str) -> None:
        async with delivering:
            await server.adeliver(user.username, _message(subject))

    await asyncio.gather(
        *(deliver(user, subjects[account_id]) for account_id, user in sample[WHILE_DOWN:])
    )

    # -- every account back in IDLE, every message stored ---------------------------
    # Waited for without failing yet: how Dovecot saw the reconnects explains a miss.
    back = await _connected_since(redis, account_ids, down_at)
    while back < ACCOUNTS and (datetime.now(UTC) - up_at).total_seconds() < BACK_IN_IDLE_WITHIN:
        await asyncio.sleep(0.2)
        back = await _connected_since(redis, account_ids, down_at)
    back_in = (datetime.now(UTC) - up_at).total_seconds()

    async def stored() -> int:
        async with state.sessionmaker() as session:
            count = await session.scalar(
                select(func.count(Message.id)).where(
                    Message.tenant_id == tenant_id, Message.subject.in_(subjects.values())
                )
            )
        return int(count or 0)

    count = await stored()
    while count < len(subjects) and (datetime.now(UTC) - up_at).total_seconds() < STORED_WITHIN:
        await asyncio.sleep(0.2)
        count = await stored()
    stored_in = (datetime.now(UTC) - up_at).total_seconds()

    # -- the reconnects, as Dovecot saw them ----------------------------------------
    events = _log_events(server.log_path, since=up_at_local)
    refused = [text for _, service, _, text in events if "process_limit" in text]
    connections = sorted(at for at, service, _, _ in events if service == "imap-login")
    logins = sorted(at for at, service, _, text in events if text.startswith("Login:"))
    busiest = max(_per_100ms(connections).values(), default=0)
    spread = (
        (logins[int(len(logins) * 0.9)] - logins[int(len(logins) * 0.1)]).total_seconds()
        if logins
        else 0.0
    )
    log.info(
        "%d of %d back in IDLE %.1f s after the restart, %d outage messages stored after "
        "%.1f s; "
        "%d connections, %d logins; busiest 100 ms: %d; 10-90%% of the logins over %.1f s",
        back,
        ACCOUNTS,
        back_in,
        count,
        stored_in,
        len(connections),
        len(logins),
        busiest,
        spread,
    )
    assert not refused, f"Dovecot ran out of login processes: {refused[:3]}"
    assert busiest <= MAX_CONNECTIONS_PER_100MS, f"{busiest} connections within 100 ms"
    assert spread >= MIN_RECONNECT_SPREAD_SECONDS, f"reconnects bunched within {spread:.1f} s"
    assert back == ACCOUNTS, f"{back} of {ACCOUNTS} in IDLE again {back_in:.0f} s after the restart"
    assert count == len(subjects), f"{count} of {len(subjects)} outage messages stored"
