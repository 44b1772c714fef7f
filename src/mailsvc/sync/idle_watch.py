"""One watched account: its IMAP connections, IDLE on each mailbox, its syncs.

The supervisor (`sync/idle.py`) decides which accounts this process watches and
holds their leases; for each one it runs `AccountWatcher.watch_account`, which
connects (one connection per IDLE mailbox, each EXAMINEd), syncs every mailbox
once, then IDLEs (or polls with NOOP) and syncs a mailbox when the server reports
a change in it. A lost connection is retried with backoff; a refused login or an
account that can no longer be watched ends the watch, and the supervisor parks
the account or releases its lease. Which mailboxes are watched, the backoff and
what counts as a change are small pure functions here, tested without a server.
"""

from __future__ import annotations

import asyncio
import enum
import random
import re
import time
import uuid
from collections.abc import Coroutine, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import redis.asyncio as aioredis
from arq.connections import ArqRedis
from redis.exceptions import RedisError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from mailsvc.account.logins import AccountLogins
from mailsvc.account.repository import UNWATCHED_STATES, AccountRepository
from mailsvc.config import Settings
from mailsvc.imap.connection import ImapConnection
from mailsvc.imap.errors import ImapAuthError, ImapError
from mailsvc.imap.mailboxes import is_selectable, mailbox_role
from mailsvc.imap.wire import ListedMailbox
from mailsvc.jobs import enqueue_sync
from mailsvc.kit.tasks import cancel_and_wait
from mailsvc.mirror.repository import MailboxRepository
from mailsvc.models import Account
from mailsvc.ops.metrics import count_idle_connections
from mailsvc.sync.engine import AccountGoneError, SyncEngine
from mailsvc.sync.idle_status import idle_status_key, idle_status_ttl_ms, idle_status_value
from mailsvc.sync.lease import LeaseManager

DEFAULT_IDLE_MAILBOXES = ("INBOX", "\\Sent")
BACKOFF_BASE_SECONDS = 1.0
BACKOFF_CAP_SECONDS = 300.0
HEALTHY_CONNECTION_SECONDS = 60.0
# How many of one process's watchers may be opening their connections (TCP, greeting,
# login, LIST, EXAMINE) at once. Watchers start together when a process starts, takes
# over a dead one's accounts or sees its server come back; unpaced, a thousand logins
# at once exhaust a server's login service (a stock Dovecot runs 100 login processes,
# one per connection until login) and it drops the rest. The catch-up sync that
# follows a connect logs in once more, so at most about twice this many logins of a
# process are in flight. Connected watchers hold no slot.
MAX_CONNECTING_WATCHERS = 32

# Untagged responses that mean the mailbox changed (RFC 3501 7.3-7.4, RFC 7162 3.2.10).
_CHANGE = re.compile(rb"^(?:\* )?(?:\d+ (?:EXISTS|EXPUNGE|FETCH)\b|VANISHED\b)", re.IGNORECASE)


def backoff_delay(attempt: int) -> float:
    """Seconds to wait before reconnect `attempt` (0-based): exponential, full jitter."""
    ceiling = min(BACKOFF_CAP_SECONDS, BACKOFF_BASE_SECONDS * 2 ** min(attempt, 20))
    return random.uniform(0, ceiling)


def reports_change(lines: Iterable[bytes | bytearray]) -> bool:
    """Whether untagged lines from IDLE or NOOP say that the mailbox changed."""
    return any(isinstance(line, bytes) and _CHANGE.match(line) for line in lines)


def idle_mailbox_setting(sync_options: dict[str, Any]) -> tuple[str, ...]:
    """The account's `sync_options.idle_mailboxes`, else INBOX and the Sent mailbox.

    Entries are mailbox paths or roles, as everywhere in `sync_options`: `sent`, or
    `\\Sent` as the special-use attribute is spelled.
    """
    value = sync_options.get("idle_mailboxes")
    if isinstance(value, list) and value and all(isinstance(name, str) for name in value):
        return tuple(value)
    return DEFAULT_IDLE_MAILBOXES


def resolve_idle_mailboxes(wanted: Sequence[str], listed: Sequence[ListedMailbox]) -> list[str]:
    """Mailbox names for the wanted entries: paths kept, roles resolved, unknowns dropped.

    A path that exists wins over a role of the same spelling. A role prefers the
    mailbox flagged with that special-use attribute over one that only has a
    well-known name. INBOX always exists (RFC 3501): it is the answer when nothing
    else matches.
    """
    selectable = [m for m in listed if is_selectable(m)]
    names = {m.name for m in selectable}
    found: list[str] = []
    for entry in wanted:
        name: str | None = None
        if entry in names:
            name = entry
        elif entry.upper() in ("INBOX", "\\INBOX"):
            name = "INBOX"
        else:
            role = entry.removeprefix("\\").lower()
            flag = f"\\{role}"
            matches = [m for m in selectable if mailbox_role(m) == role]
            matches.sort(key=lambda m: flag not in {a.lower() for a in m.attributes})
            name = matches[0].name if matches else None
        if name is not None and name not in found:
            found.append(name)
    return found or ["INBOX"]


class _AccountUnwatchable(Exception):
    """The account was deleted or parked (disabled, auth_error) since it was leased."""


class _AuthRecorded(Exception):
    """The engine was refused the login and has recorded `auth_error`."""


class WatchEnd(enum.Enum):
    """Why `AccountWatcher.watch_account` returned (cancelling it is the other way out)."""

    # The login was refused and `auth_error` recorded: the account is to be parked.
    LOGIN_REFUSED = "login_refused"
    # Deleted, disabled or parked by someone else since it was leased.
    ACCOUNT_UNWATCHABLE = "account_unwatchable"


class _SyncQueue:
    """Serialises one account's syncs; requests made while one runs become one follow-up."""

    def __init__(self) -> None:
        self._mailboxes: set[str] = set()
        self._everything = False
        self._wanted = asyncio.Event()

    def request(self, mailboxes: Iterable[str] | None) -> None:
        """Ask for a sync of `mailboxes` (None: every mailbox)."""
        if mailboxes is None:
            self._everything = True
        else:
            self._mailboxes.update(mailboxes)
        self._wanted.set()

    async def next(self) -> list[str] | None:
        """Wait for requests; take all of them at once (None: every mailbox)."""
        await self._wanted.wait()
        self._wanted.clear()
        mailboxes = None if self._everything else sorted(self._mailboxes)
        self._everything = False
        self._mailboxes.clear()
        return mailboxes


class _ConnectSlot:
    """A watcher's place among the connecting ones; given back once, when its
    connections watch or the attempt fails, whichever comes first."""

    def __init__(self, slots: asyncio.Semaphore) -> None:
        self._slots = slots
        self._held = False

    async def acquire(self) -> None:
        await self._slots.acquire()
        self._held = True

    def release(self) -> None:
        if self._held:
            self._held = False
            self._slots.release()


@dataclass(eq=False)
class _Connection:
    """One watching connection and the mailbox it watches."""

    imap: ImapConnection
    mailbox: str = ""
    counted: bool = False


@dataclass(eq=False)
class AccountWatch:
    """An account this process holds the lease of, and its watcher task."""

    tenant_id: str
    account_id: uuid.UUID
    credentials_version: int
    idle_setting: tuple[str, ...]
    log: Any = field(repr=False)
    task: asyncio.Task[None] | None = None
    # The watcher this one replaces; it must have closed its connections first.
    previous: asyncio.Task[None] | None = None
    # The value of the idle status key while connected (and refreshed by renewals).
    status: str | None = None
    # When the current connections started watching (monotonic), for the backoff.
    watching_since: float | None = None


async def _until_first_ends(coroutines: Iterable[Coroutine[Any, Any, None]]) -> None:
    """Run the coroutines together until one ends; cancel the rest; re-raise its error."""
    tasks = [asyncio.create_task(coroutine) for coroutine in coroutines]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        await cancel_and_wait(tasks)
    for task in done:
        if not task.cancelled() and (error := task.exception()) is not None:
            raise error


class AccountWatcher:
    """Watches accounts for one supervisor: what every watch needs, and its loops."""

    def __init__(
        self,
        *,
        sessionmaker: async_sessionmaker[AsyncSession],
        redis: aioredis.Redis,
        engine: SyncEngine,
        logins: AccountLogins,
        settings: Settings,
        leases: LeaseManager,
    ) -> None:
        self._sessionmaker = sessionmaker
        self._redis = redis
        self._arq = ArqRedis(connection_pool=redis.connection_pool)
        self._engine = engine
        self._logins = logins
        self._settings = settings
        self._leases = leases
        self._status_ms = idle_status_ttl_ms(settings.idle_lease_ttl_seconds)
        self._connecting = asyncio.Semaphore(MAX_CONNECTING_WATCHERS)

    async def watch_account(self, watch: AccountWatch) -> WatchEnd:
        """Keep the account watched until it is refused, gone, or this task is cancelled."""
        attempt = 0
        while True:
            watch.watching_since = None
            try:
                await self._connect_and_watch(watch)
            except _AuthRecorded:
                return WatchEnd.LOGIN_REFUSED
            except ImapAuthError as exc:
                # The engine owns account.state; a refused login is definitive.
                await self._engine.record_login_refused(watch.tenant_id, watch.account_id, str(exc))
                return WatchEnd.LOGIN_REFUSED
            except _AccountUnwatchable:
                watch.log.info("idle.account_unwatchable")
                return WatchEnd.ACCOUNT_UNWATCHABLE
            except ImapError as exc:
                watch.log.warning("idle.disconnected", error=str(exc))
            except Exception:
                watch.log.exception("idle.watcher_failed")
            # Only a connection that watched for a while was healthy: one that drops
            # right after connecting (a flapping server) keeps backing off.
            since = watch.watching_since
            if since is not None and time.monotonic() - since > HEALTHY_CONNECTION_SECONDS:
                attempt = 0
            delay = backoff_delay(attempt)
            attempt += 1
            watch.log.info("idle.reconnect_scheduled", delay_seconds=round(delay, 3))
            await asyncio.sleep(delay)

    async def _load(self, watch: AccountWatch) -> Account:
        async with self._sessionmaker() as session:
            account = await AccountRepository(session, watch.tenant_id).get(watch.account_id)
        if account is None or account.state in UNWATCHED_STATES:
            raise _AccountUnwatchable
        watch.credentials_version = account.credentials_version
        watch.idle_setting = idle_mailbox_setting(account.sync_options or {})
        return account

    async def _connect(self, account: Account) -> _Connection:
        return _Connection(await self._logins.connect_imap(account))

    async def _connect_and_watch(self, watch: AccountWatch) -> None:
        slot = _ConnectSlot(self._connecting)
        await slot.acquire()
        connections: list[_Connection] = []
        try:
            account = await self._load(watch)
            connections.append(await self._connect(account))
            listed = await connections[0].imap.list_mailboxes()
            mailboxes = resolve_idle_mailboxes(watch.idle_setting, listed)
            budget = self._settings.idle_max_connections_per_account
            if len(mailboxes) > budget:
                watch.log.warning("idle.over_budget", unwatched=mailboxes[budget:])
                mailboxes = mailboxes[:budget]
            while len(connections) < len(mailboxes):
                connections.append(await self._connect(account))
            for connection, mailbox in zip(connections, mailboxes, strict=True):
                # EXAMINE: watching must not change \Recent or anything else.
                await connection.imap.select(mailbox, readonly=True)
                connection.mailbox = mailbox
                connection.counted = True
                count_idle_connections(1)
            queue = _SyncQueue()
            if await self._mirrored(watch):
                # Catch up on what changed while nobody watched: a light pass.
                queue.request(None)
            else:
                # A first mirror is heavy work: the worker does it, not the api process.
                # Pushes meanwhile still sync their mailbox here.
                await enqueue_sync(
                    self._arq, tenant_id=watch.tenant_id, account_id=watch.account_id
                )
            watch.status = idle_status_value(owner_id=self._leases.owner_id, mailboxes=mailboxes)
            await self._redis.set(
                idle_status_key(watch.account_id), watch.status, px=self._status_ms
            )
            watch.watching_since = time.monotonic()
            slot.release()
            watch.log.info(
                "idle.connected", mailboxes=mailboxes, idle=connections[0].imap.has("IDLE")
            )
            await _until_first_ends(
                [
                    self._run_syncs(watch, queue),
                    *(self._watch_mailbox(watch, queue, c) for c in connections),
                ]
            )
        finally:
            slot.release()
            await self._disconnect(watch, connections)

    async def _mirrored(self, watch: AccountWatch) -> bool:
        async with self._sessionmaker() as session:
            return await MailboxRepository(session, watch.tenant_id).has_synced(watch.account_id)

    async def _disconnect(self, watch: AccountWatch, connections: list[_Connection]) -> None:
        status, watch.status = watch.status, None
        if status is not None:
            try:
                # Only our own value: the next owner may have written its status already.
                await self._leases.delete_if_value(idle_status_key(watch.account_id), status)
            except RedisError as exc:
                watch.log.warning("idle.status_not_cleared", error=str(exc))
        await asyncio.gather(*(self._close(connection) for connection in connections))

    @staticmethod
    async def _close(connection: _Connection) -> None:
        if connection.counted:
            count_idle_connections(-1)
            connection.counted = False
        # `ImapConnection.idle()` sends DONE even when cancelled, so LOGOUT is clean.
        await connection.imap.logout()

    async def _run_syncs(self, watch: AccountWatch, queue: _SyncQueue) -> None:
        while True:
            mailboxes = await queue.next()
            try:
                report = await self._engine.sync_account(
                    watch.tenant_id, watch.account_id, mailboxes=mailboxes
                )
            except ImapAuthError as exc:
                raise _AuthRecorded from exc
            except AccountGoneError as exc:
                raise _AccountUnwatchable from exc
            watch.log.info(
                "idle.synced",
                mailboxes=mailboxes,
                new=report.new_messages,
                updated=report.updated,
                deleted=report.deleted,
            )

    async def _watch_mailbox(
        self, watch: AccountWatch, queue: _SyncQueue, connection: _Connection
    ) -> None:
        imap = connection.imap
        if not imap.has("IDLE"):
            while True:
                await asyncio.sleep(self._settings.idle_poll_seconds)
                if reports_change(await imap.noop()):
                    watch.log.info("idle.push", mailbox=connection.mailbox, via="noop")
                    queue.request([connection.mailbox])
        while True:
            lines = await imap.idle(wait_seconds=self._settings.idle_reissue_seconds)
            if reports_change(lines):
                watch.log.info("idle.push", mailbox=connection.mailbox)
                queue.request([connection.mailbox])
