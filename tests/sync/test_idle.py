"""The IDLE supervisor against the run's Dovecot, PostgreSQL and Redis.

Each test builds its own supervisors, limited to the test's tenant, with a short
lease TTL and scan interval so that ownership changes take a second, not a minute.
"""

import asyncio
import os
import secrets
import subprocess
import sys
import uuid
from collections.abc import Awaitable, Callable, Iterator
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis
from fastapi import FastAPI
from prometheus_client import REGISTRY
from sqlalchemy import select

from mailsvc.account.control import ACCOUNT_CONTROL_CHANNEL
from mailsvc.config import Settings
from mailsvc.imap.wire import ListedMailbox
from mailsvc.jobs import sync_job_id
from mailsvc.models import Account, Message
from mailsvc.runtime import Runtime
from mailsvc.sync.engine import SyncEngine
from mailsvc.sync.idle import IdleSupervisor
from mailsvc.sync.idle_status import idle_status
from mailsvc.sync.idle_watch import (
    DEFAULT_IDLE_MAILBOXES,
    _SyncQueue,
    backoff_delay,
    idle_mailbox_setting,
    reports_change,
    resolve_idle_mailboxes,
)
from mailsvc.sync.lease import SUPERVISORS_KEY, LeaseManager, account_lease_key
from tests.fixtures import imap_client
from tests.fixtures.app import account_body, remember_secret
from tests.fixtures.dovecot import DovecotServer, TestMailUser
from tests.fixtures.idle import LEASE_TTL, SCAN_INTERVAL, SupervisorFactory
from tests.fixtures.smtp_server import SmtpRelay
from tests.fixtures.tls import TlsFiles
from tests.fixtures.waiting import eventually

# -- pure parts -------------------------------------------------------------------


def _listed(name: str, *attributes: str) -> ListedMailbox:
    return ListedMailbox(name, name, "/", frozenset(attributes))


def test_idle_mailboxes_resolve_roles_names_and_fall_back_to_inbox() -> None:
    listed = [
        _listed("INBOX"),
        _listed("Sent Items"),  # a well-known name without the attribute
        _listed("Outgoing", "\\Sent"),
        _listed("Lists/rust"),
        _listed("Lists", "\\Noselect"),
        _listed("junk"),
    ]
    assert resolve_idle_mailboxes(DEFAULT_IDLE_MAILBOXES, listed) == ["INBOX", "Outgoing"]
    assert resolve_idle_mailboxes(["inbox", "sent", "\\Sent"], listed) == ["INBOX", "Outgoing"]
    assert resolve_idle_mailboxes(["Lists/rust", "Nope", "\\Trash", "INBOX"], listed) == [
        "Lists/rust",
        "INBOX",
    ]
    # A path wins over a role spelled the same; an unselectable one is no answer.
    assert resolve_idle_mailboxes(["junk"], listed) == ["junk"]
    assert resolve_idle_mailboxes(["Lists"], listed) == ["INBOX"]
    assert resolve_idle_mailboxes(["\\Sent"], [_listed("INBOX"), _listed("Sent Items")]) == [
        "Sent Items"
    ]


def test_idle_mailbox_setting_comes_from_sync_options() -> None:
    assert idle_mailbox_setting({}) == ("INBOX", "\\Sent")
    assert idle_mailbox_setting({"idle_mailboxes": ["INBOX", "Work"]}) == ("INBOX", "Work")
    assert idle_mailbox_setting({"idle_mailboxes": "INBOX"}) == DEFAULT_IDLE_MAILBOXES
    assert idle_mailbox_setting({"idle_mailboxes": []}) == DEFAULT_IDLE_MAILBOXES


def test_changes_are_told_apart_from_keepalives() -> None:
    assert reports_change([b"4 EXISTS"])
    assert reports_change([b"* 2 EXPUNGE"])
    assert reports_change([b"3 FETCH (FLAGS (\\Seen) UID 7)"])
    assert reports_change([b"VANISHED 5:7"])
    assert not reports_change([b"OK Still here"])
    assert not reports_change([b"1 RECENT", b"stop_wait_server_push", bytearray(b"4 EXISTS")])


def test_backoff_is_jittered_exponential_and_capped() -> None:
    for attempt, ceiling in ((0, 1.0), (1, 2.0), (4, 16.0), (9, 300.0), (500, 300.0)):
        delays = [backoff_delay(attempt) for _ in range(200)]
        assert all(0 <= delay <= ceiling for delay in delays)
        assert max(delays) > ceiling / 2, "full jitter spreads over the whole range"


async def test_sync_requests_made_during_a_sync_become_one_follow_up() -> None:
    queue = _SyncQueue()
    queue.request(["INBOX"])
    assert await queue.next() == ["INBOX"]
    # While that sync runs, three pushes arrive.
    queue.request(["INBOX"])
    queue.request(["Sent"])
    queue.request(["INBOX"])
    assert await queue.next() == ["INBOX", "Sent"]
    queue.request(["Sent"])
    queue.request(None)
    assert await queue.next() is None, "a sync of everything absorbs the rest"
    waiting = asyncio.create_task(queue.next())
    await asyncio.sleep(0)
    assert not waiting.done()
    queue.request(["Work"])
    assert await waiting == ["Work"]


# -- against the real servers ---------------------------------------------------------


@pytest.fixture
def leases(redis: aioredis.Redis) -> LeaseManager:
    """Read-only use: who holds which lease."""
    return LeaseManager(redis, owner_id="test-observer", ttl_seconds=LEASE_TTL)


@pytest.fixture
def new_account(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    tenant_id: str,
    dovecot: DovecotServer,
    smtp_relay: SmtpRelay,
    engine: SyncEngine,
) -> Callable[..., Awaitable[tuple[uuid.UUID, TestMailUser]]]:
    """A registered account; mirrored once, as the worker's first job would, unless not."""

    async def create(*, mirrored: bool = True) -> tuple[uuid.UUID, TestMailUser]:
        user = dovecot.add_user(f"idle-{secrets.token_hex(5)}", secrets.token_urlsafe(12))
        response = await client.post(
            "/api/accounts",
            json=account_body(dovecot, smtp_relay, user),
            headers=auth,
            params={"verify": "false"},
        )
        assert response.status_code == 201, response.text
        account_id = uuid.UUID(response.json()["id"])
        if mirrored:
            await engine.sync_account(tenant_id, account_id)
        return account_id, user

    return create


def _message(subject: str) -> bytes:
    message = EmailMessage()
    message["From"] = "Sender <sender@example.test>"
    message["To"] = "Recipient <rcpt@example.test>"
    message["Subject"] = subject
    message["Message-ID"] = f"<{secrets.token_hex(8)}@example.test>"
    message.set_content("Delivered while mailsvc was watching.\n")
    return message.as_bytes()


def _idle_connections() -> float:
    return REGISTRY.get_sample_value("mailsvc_idle_connections") or 0.0


def _synced(
    caplog: pytest.LogCaptureFixture, account_id: uuid.UUID, *, times: int
) -> Callable[[], Awaitable[bool]]:
    """Whether `times` sync passes of the account have completed (the account's first
    mirror, then the watcher's catch-up pass right after it connects). Counted in the
    log: a pass that changed nothing appends no `sync.completed` change."""

    async def check() -> bool:
        events = [record.msg for record in caplog.records if isinstance(record.msg, dict)]
        done = [
            event
            for event in events
            if event.get("event") == "sync.account_done"
            and event.get("account_id") == str(account_id)
        ]
        return len(done) >= times

    return check


def _stored(state: Runtime, account_id: uuid.UUID, subject: str) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        async with state.sessionmaker() as session:
            found = await session.scalar(
                select(Message.id).where(
                    Message.account_id == account_id, Message.subject == subject
                )
            )
        return found is not None

    return check


def _pushes(caplog: pytest.LogCaptureFixture, account_id: uuid.UUID) -> list[dict[str, Any]]:
    """The `idle.push` events logged for the account (structlog hands over event dicts)."""
    events = [record.msg for record in caplog.records if isinstance(record.msg, dict)]
    return [
        event
        for event in events
        if event.get("event") == "idle.push" and event.get("account_id") == str(account_id)
    ]


async def test_a_delivered_message_is_synced_by_the_idle_push(
    app: FastAPI,
    supervisors: SupervisorFactory,
    new_account: Callable[..., Awaitable[tuple[uuid.UUID, TestMailUser]]],
    dovecot: DovecotServer,
    redis: aioredis.Redis,
    caplog: pytest.LogCaptureFixture,
) -> None:
    state: Runtime = app.state.mailsvc
    account_id, user = await new_account()
    connections_before = _idle_connections()
    supervisor = supervisors()

    async def watching() -> bool:
        return await idle_status(redis, account_id) is not None

    await eventually(watching, what="watcher connected")
    # Mail delivered from now on can only be found through a push.
    await eventually(_synced(caplog, account_id, times=2), what="catch-up sync")
    status = await idle_status(redis, account_id)
    assert status is not None
    assert status["owner"] == supervisor.owner_id
    assert status["mailboxes"] == ["INBOX", "Sent"]
    assert _idle_connections() == connections_before + 2

    subject = f"Pushed {secrets.token_hex(4)}"
    await dovecot.adeliver(user.username, _message(subject))

    latency = await eventually(_stored(state, account_id, subject), what="message stored")
    assert latency < 8.0
    assert _pushes(caplog, account_id), "the message came through an IDLE push"
    async with state.sessionmaker() as session:
        account = await session.get(Account, account_id)
        assert account is not None
        assert account.state == "connected"


async def test_two_supervisors_share_accounts_and_hand_them_over(
    supervisors: SupervisorFactory,
    new_account: Callable[..., Awaitable[tuple[uuid.UUID, TestMailUser]]],
    redis: aioredis.Redis,
    leases: LeaseManager,
) -> None:
    account_ids = [(await new_account())[0] for _ in range(4)]
    first, second = supervisors(), supervisors()
    keys = [account_lease_key(account_id) for account_id in account_ids]

    async def each_watched_once() -> bool:
        owners = await leases.owners(keys)
        if any(owner is None for owner in owners.values()):
            return False
        if first.watched_accounts & second.watched_accounts:
            return False
        # The first to scan takes everything, then gives back above its share + 1.
        if not (first.watched_accounts and second.watched_accounts):
            return False
        for account_id, key in zip(account_ids, keys, strict=True):
            status = await idle_status(redis, account_id)
            holder = first if owners[key] == first.owner_id else second
            if status is None or status["owner"] != owners[key]:
                return False
            if account_id not in holder.watched_accounts:
                return False
        return True

    await eventually(each_watched_once, within=15.0, what="accounts shared")

    await first.stop()

    async def all_with_second() -> bool:
        owners = await leases.owners(keys)
        return set(owners.values()) == {second.owner_id} and second.watched_accounts >= set(
            account_ids
        )

    handed_over = await eventually(all_with_second, within=15.0, what="hand-over")
    assert handed_over < LEASE_TTL + SCAN_INTERVAL + 1.0

    async def second_watches_all() -> bool:
        statuses = [await idle_status(redis, account_id) for account_id in account_ids]
        return all(s is not None and s["owner"] == second.owner_id for s in statuses)

    await eventually(second_watches_all, what="second supervisor connected")


async def test_a_stopping_supervisor_has_the_others_take_its_accounts_at_once(
    supervisors: SupervisorFactory,
    new_account: Callable[..., Awaitable[tuple[uuid.UUID, TestMailUser]]],
    redis: aioredis.Redis,
    leases: LeaseManager,
) -> None:
    account_ids = [(await new_account())[0] for _ in range(2)]
    keys = [account_lease_key(account_id) for account_id in account_ids]
    first = supervisors()

    def all_with(supervisor: IdleSupervisor) -> Callable[[], Awaitable[bool]]:
        async def check() -> bool:
            return set((await leases.owners(keys)).values()) == {supervisor.owner_id}

        return check

    await eventually(all_with(first), what="first supervisor holding every account")
    listening = await _control_subscribers(redis)
    # Scans an hour apart: only being told can make it look again within the test.
    second = supervisors(idle_scan_interval_seconds=3600.0)

    async def second_listening() -> bool:
        return await _control_subscribers(redis) > listening

    await eventually(second_listening, what="second supervisor subscribed")
    assert not second.watched_accounts  # its first scan found both held by the first
    await first.stop()
    await eventually(all_with(second), within=30.0, what="hand-over on the rescan message")
    assert second.watched_accounts == set(account_ids)


async def _control_subscribers(redis: aioredis.Redis) -> int:
    [(_, count)] = await redis.pubsub_numsub(ACCOUNT_CONTROL_CHANNEL)
    return int(count)


async def test_deleting_an_account_stops_its_watcher(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    supervisors: SupervisorFactory,
    new_account: Callable[..., Awaitable[tuple[uuid.UUID, TestMailUser]]],
    redis: aioredis.Redis,
    leases: LeaseManager,
) -> None:
    account_id, _ = await new_account()
    connections_before = _idle_connections()
    # A long scan interval: only the control message can stop the watcher in time.
    supervisor = supervisors(idle_scan_interval_seconds=600)

    async def watching() -> bool:
        return await idle_status(redis, account_id) is not None

    await eventually(watching, what="watcher connected")
    assert _idle_connections() == connections_before + 2

    response = await client.delete(f"/api/accounts/{account_id}", headers=auth)
    assert response.status_code == 204

    async def stopped() -> bool:
        return (
            account_id not in supervisor.watched_accounts
            and await idle_status(redis, account_id) is None
            and await leases.owner(account_lease_key(account_id)) is None
            and _idle_connections() == connections_before
        )

    await eventually(stopped, within=5.0, what="watcher stopped")


async def test_a_refused_login_parks_the_account_until_new_credentials(
    app: FastAPI,
    client: httpx.AsyncClient,
    auth: dict[str, str],
    supervisors: SupervisorFactory,
    new_account: Callable[..., Awaitable[tuple[uuid.UUID, TestMailUser]]],
    dovecot: DovecotServer,
    smtp_relay: SmtpRelay,
    redis: aioredis.Redis,
    leases: LeaseManager,
) -> None:
    state: Runtime = app.state.mailsvc
    account_id, user = await new_account()
    # A long scan interval: being watched again must come from the control message.
    supervisor = supervisors(idle_scan_interval_seconds=600)

    async def watching() -> bool:
        status = await idle_status(redis, account_id)
        return status is not None and status["owner"] == supervisor.owner_id

    await eventually(watching, what="watcher connected")

    new_password = remember_secret(secrets.token_urlsafe(12))
    user = await asyncio.to_thread(dovecot.change_password, user.username, new_password)

    async def kicked_or_parked() -> bool:
        # Dovecot's session registry can trail a fresh login by a moment; and if the
        # watcher reconnected on its own meanwhile, the new password parked it already.
        return await asyncio.to_thread(dovecot.kick, user.username) or await parked()

    async def parked() -> bool:
        async with state.sessionmaker() as session:
            account = await session.get(Account, account_id, populate_existing=True)
        return (
            account is not None
            and account.state == "auth_error"
            and account_id not in supervisor.watched_accounts
            and await idle_status(redis, account_id) is None
            and await leases.owner(account_lease_key(account_id)) is None
        )

    await eventually(kicked_or_parked, what="watcher session kicked")
    await eventually(parked, within=20.0, what="account parked in auth_error")

    response = await client.put(
        f"/api/accounts/{account_id}",
        json=account_body(dovecot, smtp_relay, user),
        headers=auth,
    )
    assert response.status_code == 200, response.text

    await eventually(watching, what="watched again after new credentials")


# Dovecot's own capability list, less IDLE: a real server that does not offer it.
_CAPABILITIES_WITHOUT_IDLE = (
    "IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE SORT SORT=DISPLAY THREAD=REFERENCES "
    "THREAD=REFS THREAD=ORDEREDSUBJECT MULTIAPPEND URL-PARTIAL CATENATE UNSELECT CHILDREN "
    "NAMESPACE UIDPLUS LIST-EXTENDED I18NLEVEL=1 CONDSTORE QRESYNC ESEARCH ESORT "
    "SEARCHRES WITHIN CONTEXT=SEARCH LIST-STATUS BINARY MOVE SNIPPET=FUZZY PREVIEW=FUZZY "
    "PREVIEW STATUS=SIZE SAVEDATE LITERAL+ NOTIFY SPECIAL-USE"
)


@pytest.fixture
def dovecot_without_idle(peer_tls: TlsFiles) -> Iterator[DovecotServer]:
    server = DovecotServer(
        tls=peer_tls, extra_config=f"imap_capability = {_CAPABILITIES_WITHOUT_IDLE}"
    )
    server.start()
    yield server
    server.stop()


async def test_servers_without_idle_are_polled_with_noop(
    app: FastAPI,
    client: httpx.AsyncClient,
    auth: dict[str, str],
    tenant_id: str,
    engine: SyncEngine,
    # Before `supervisors`, so the server outlives the watcher at teardown.
    dovecot_without_idle: DovecotServer,
    supervisors: SupervisorFactory,
    smtp_relay: SmtpRelay,
    redis: aioredis.Redis,
    caplog: pytest.LogCaptureFixture,
) -> None:
    server = dovecot_without_idle
    user = server.add_user(f"noidle-{secrets.token_hex(4)}", secrets.token_urlsafe(12))
    with imap_client.imap_session(server, user) as probe:
        assert "IDLE" not in probe.capabilities
    created = await client.post(
        "/api/accounts",
        json=account_body(server, smtp_relay, user),
        headers=auth,
        params={"verify": "false"},
    )
    account_id = uuid.UUID(created.json()["id"])
    await engine.sync_account(tenant_id, account_id)
    state: Runtime = app.state.mailsvc
    supervisors(idle_poll_seconds=0.2)

    async def watching() -> bool:
        return await idle_status(redis, account_id) is not None

    await eventually(watching, what="watcher connected")
    await eventually(_synced(caplog, account_id, times=2), what="catch-up sync")
    subject = f"Polled {secrets.token_hex(4)}"
    await server.adeliver(user.username, _message(subject))

    await eventually(_stored(state, account_id, subject), what="message stored")
    pushes = _pushes(caplog, account_id)
    assert pushes
    assert all(push.get("via") == "noop" for push in pushes)


# Another process running a supervisor, to be killed with SIGKILL: nothing of it
# gets to clean up, as in a crash or an OOM kill.
_SUPERVISOR_PROCESS = """
import asyncio, sys
from mailsvc.config import Settings
from mailsvc.kit.db import create_engine, create_sessionmaker
from mailsvc.account.logins import AccountLogins
from mailsvc.kit.redis import create_redis
from mailsvc.kit.crypto import SecretBox
from mailsvc.sync.engine import SyncEngine
from mailsvc.sync.idle import IdleSupervisor
from mailsvc.sync.parser import ParserPool

async def main(owner_id: str, tenant_id: str) -> None:
    settings = Settings(_env_file=None)
    sessionmaker = create_sessionmaker(create_engine(settings.async_database_url, pool_size=2))
    box = SecretBox(*settings.encryption_keys())
    redis = create_redis(settings.required_redis_url)
    logins = AccountLogins(sessionmaker=sessionmaker, redis=redis, secrets=box, settings=settings)
    engine = SyncEngine(sessionmaker=sessionmaker, logins=logins, settings=settings,
                        parser=ParserPool(processes=1))
    IdleSupervisor(sessionmaker=sessionmaker, redis=redis,
                   engine=engine, logins=logins, settings=settings, owner_id=owner_id,
                   tenant_ids={tenant_id}).start()
    await asyncio.Event().wait()

asyncio.run(main(sys.argv[1], sys.argv[2]))
"""


def _supervisor_process_env(settings: Settings) -> dict[str, str]:
    assert settings.jwt_secret is not None
    assert settings.encryption_key is not None
    assert settings.database_url is not None
    assert settings.redis_url is not None
    return {
        **os.environ,
        "ENVIRONMENT": "test",
        "DATABASE_URL": settings.database_url,
        "REDIS_URL": settings.redis_url,
        "JWT_SECRET": settings.jwt_secret.get_secret_value(),
        "ENCRYPTION_KEY": settings.encryption_key.get_secret_value(),
        "MAIL_TLS_CA_FILE": str(settings.mail_tls_ca_file or ""),
        "ALLOW_PRIVATE_HOSTS": "true",
        "IDLE_LEASE_TTL_SECONDS": str(LEASE_TTL),
        "IDLE_SCAN_INTERVAL_SECONDS": str(SCAN_INTERVAL),
        "LOG_LEVEL": "WARNING",
    }


async def test_a_killed_owner_s_accounts_are_taken_over_within_the_lease_ttl(
    settings: Settings,
    tenant_id: str,
    supervisors: SupervisorFactory,
    new_account: Callable[..., Awaitable[tuple[uuid.UUID, TestMailUser]]],
    redis: aioredis.Redis,
    leases: LeaseManager,
    tmp_path: Path,
) -> None:
    account_ids = [(await new_account())[0] for _ in range(2)]
    keys = [account_lease_key(account_id) for account_id in account_ids]
    doomed = f"doomed-{secrets.token_hex(4)}"
    with (tmp_path / "supervisor.log").open("wb") as output:
        process = subprocess.Popen(  # noqa: ASYNC220 - returns at once; waits go to a thread
            [sys.executable, "-c", _SUPERVISOR_PROCESS, doomed, tenant_id],
            env=_supervisor_process_env(settings),
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    try:

        async def owned_by(owner: str) -> bool:
            statuses = [await idle_status(redis, account_id) for account_id in account_ids]
            return set((await leases.owners(keys)).values()) == {owner} and all(
                status is not None and status["owner"] == owner for status in statuses
            )

        await eventually(lambda: owned_by(doomed), within=30.0, what="the other process watching")
        survivor = supervisors()

        async def survivor_live() -> bool:
            return await redis.zscore(SUPERVISORS_KEY, survivor.owner_id) is not None

        await eventually(survivor_live, what="survivor running")
        # Fair share: one each, but the owner keeps share + 1 rather than shuffle.
        assert not survivor.watched_accounts

        process.kill()
        await asyncio.to_thread(process.wait, 10)
        taken_over = await eventually(
            lambda: owned_by(survivor.owner_id), within=15.0, what="take-over"
        )
        assert taken_over < LEASE_TTL + SCAN_INTERVAL + 1.5
    finally:
        if process.poll() is None:
            process.kill()
            await asyncio.to_thread(process.wait, 10)


async def test_a_first_mirror_is_left_to_the_worker(
    supervisors: SupervisorFactory,
    new_account: Callable[..., Awaitable[tuple[uuid.UUID, TestMailUser]]],
    redis: aioredis.Redis,
) -> None:
    account_id, _ = await new_account(mirrored=False)
    job_key = f"arq:job:{sync_job_id(account_id)}"
    # Forget the job that registering the account queued: the watcher must queue its own.
    await redis.delete(job_key)
    await redis.zrem("arq:queue", sync_job_id(account_id))
    supervisors()

    async def queued() -> bool:
        return bool(await redis.exists(job_key))

    await eventually(queued, what="first mirror queued for the worker")
