"""The IDLE supervisor: live IMAP connections for the accounts this process owns.

It runs inside the api process and only notices change; the sync engine does the
work. Every `IDLE_SCAN_INTERVAL_SECONDS` it lists the accounts that should be
watched (all tenants), takes a fair share of them through Redis leases
(`sync/lease.py`), and runs one watcher task per account it holds:

    acquired ─► connect, LIST, EXAMINE each IDLE mailbox (one connection each)
                  │ sync every mailbox once (catches what changed unwatched)
                  ▼
               watching: IDLE (re-issued every IDLE_REISSUE_SECONDS at most), or
                  │      NOOP every IDLE_POLL_SECONDS where IDLE is missing
                  │ EXISTS / EXPUNGE / FETCH / VANISHED ─► sync that mailbox
                  ▼
    connection lost, server unreachable ─► backoff (1 s .. 5 min, full jitter) ─► connect
    login refused ─► parked: the engine has recorded `auth_error`, the watcher
                     ends and the lease is released; the account is left alone
                     until its `credentials_version` grows or a `reconnect`
                     control message arrives
    account deleted / disabled, lease lost, rebalanced, shut down ─► watcher ends

Account changes arrive on the `mailsvc:account-control` channel (`stop` ends the
watcher and releases the lease at once, `reconnect` restarts it) and, should a
message be lost, through the next scan. While connected, `mailsvc:idle:<account>`
says who watches which mailboxes since when (`idle_status`, for the status API).

Invariants:

- A watcher runs only while this process holds the account's lease. Leases are
  renewed every third of their TTL; a lease that was not renewed belongs to someone
  else (or to nobody) and its watcher is cancelled at once. If Redis cannot be
  reached for two thirds of a TTL, every watcher stops: ownership can no longer be
  proven.
- One account's syncs never overlap in this process. A push that arrives while a
  sync runs is merged into a single follow-up sync, never dropped; an engine error
  tears the connections down and the reconnect starts with a sync of every mailbox.
- The first sync after connecting starts after the IDLE mailboxes are selected, so
  a change is seen either by that sync or by IDLE; none falls in between.
- `account.state` is written by the engine only; a login refused to a watcher is
  handed to `SyncEngine.record_login_refused`, which records `auth_error`.

On a crash (or `kill -9`) nothing is cleaned up: the leases and the heartbeat expire
after `IDLE_LEASE_TTL_SECONDS`, the other supervisors take the accounts at their next
scan, and their watchers start with a sync, so mail that arrived in between is
fetched then. A stale `mailsvc:idle:<account>` status key expires after two TTLs.
A process that stalls past its TTL and wakes up finds its renewals refused and
stops those watchers; until then two processes may briefly watch one account,
which costs connections, not correctness (the engine's writes are idempotent).
"""

from __future__ import annotations

import asyncio
import contextvars
import json
import math
import random
import re
import time
import uuid
from collections.abc import Collection, Coroutine, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import redis.asyncio as aioredis
import structlog
from arq.connections import ArqRedis
from redis.exceptions import RedisError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from mailsvc.account.control import ACCOUNT_CONTROL_CHANNEL
from mailsvc.account.credentials import imap_server
from mailsvc.account.repository import (
    UNWATCHED_STATES,
    AccountRepository,
    AccountToWatch,
    accounts_to_watch,
)
from mailsvc.config import Settings
from mailsvc.imap.connection import ImapConnection, connect_imap
from mailsvc.imap.errors import ImapAuthError, ImapError
from mailsvc.imap.mailboxes import is_selectable, mailbox_role
from mailsvc.imap.wire import ListedMailbox
from mailsvc.jobs import enqueue_sync
from mailsvc.kit.crypto import SecretBox
from mailsvc.kit.mailserver import MailServer, tls_context
from mailsvc.kit.tasks import cancel_and_wait
from mailsvc.ops.metrics import count_idle_connections
from mailsvc.sync.engine import AccountGoneError, SyncEngine
from mailsvc.sync.lease import LeaseManager, account_lease_key
from mailsvc.sync.repository import MailboxRepository

log = structlog.get_logger("mailsvc.sync.idle")

IDLE_STATUS_PREFIX = "mailsvc:idle:"
DEFAULT_IDLE_MAILBOXES = ("INBOX", "\\Sent")
BACKOFF_BASE_SECONDS = 1.0
BACKOFF_CAP_SECONDS = 300.0
HEALTHY_CONNECTION_SECONDS = 60.0

# Untagged responses that mean the mailbox changed (RFC 3501 7.3-7.4, RFC 7162 3.2.10).
_CHANGE = re.compile(rb"^(?:\* )?(?:\d+ (?:EXISTS|EXPUNGE|FETCH)\b|VANISHED\b)", re.IGNORECASE)


def idle_status_key(account_id: uuid.UUID) -> str:
    return f"{IDLE_STATUS_PREFIX}{account_id}"


async def idle_status(redis: aioredis.Redis, account_id: uuid.UUID) -> dict[str, Any] | None:
    """`{"owner", "mailboxes", "connected_at"}` while a process watches the account."""
    raw = await redis.get(idle_status_key(account_id))
    if raw is None:
        return None
    status: dict[str, Any] = json.loads(raw)
    return status


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


@dataclass(eq=False)
class _Connection:
    """One watching connection and the mailbox it watches."""

    imap: ImapConnection
    mailbox: str = ""
    counted: bool = False


@dataclass(eq=False)
class _Watch:
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


class IdleSupervisor:
    """Owns a fair share of the accounts through leases and keeps them watched.

    `tenant_ids` limits it to some tenants (a dedicated shard, or a test); by default
    it considers every account of every tenant.
    """

    def __init__(
        self,
        *,
        sessionmaker: async_sessionmaker[AsyncSession],
        redis: aioredis.Redis,
        engine: SyncEngine,
        secrets: SecretBox,
        settings: Settings,
        owner_id: str,
        tenant_ids: Collection[str] | None = None,
    ) -> None:
        self._sessionmaker = sessionmaker
        self._redis = redis
        self._arq = ArqRedis(connection_pool=redis.connection_pool)
        self._engine = engine
        self._secrets = secrets
        self._settings = settings
        self.owner_id = owner_id
        self._tenant_ids = frozenset(tenant_ids) if tenant_ids is not None else None
        self._ttl = settings.idle_lease_ttl_seconds
        self._leases = LeaseManager(redis, owner_id=owner_id, ttl_seconds=self._ttl)
        self._tls = tls_context(settings.mail_tls_ca_file)
        self._watches: dict[uuid.UUID, _Watch] = {}
        # Accounts whose login was refused, with the credentials_version refused.
        self._parked: dict[uuid.UUID, int] = {}
        self._loops: list[asyncio.Task[None]] = []
        self._watchers: set[asyncio.Task[None]] = set()
        self._scan_soon = asyncio.Event()
        self._renewed_at = time.monotonic()

    @property
    def watched_accounts(self) -> frozenset[uuid.UUID]:
        """Accounts this supervisor holds and runs a watcher for."""
        return frozenset(self._watches)

    def start(self) -> None:
        """Start scanning, renewing and listening for control messages."""
        if self._loops:
            raise RuntimeError("the IDLE supervisor is already running")
        self._renewed_at = time.monotonic()
        # A context of their own: the caller's log context (a request id, say) must
        # not follow every watcher's log lines for the life of the process.
        self._loops = [
            asyncio.create_task(loop, name=name, context=contextvars.Context())
            for name, loop in (
                ("idle-scan", self._scan_loop()),
                ("idle-renew", self._renew_loop()),
                ("idle-control", self._control_loop()),
            )
        ]
        log.info("idle.started", owner=self.owner_id)

    async def stop(self) -> None:
        """Stop every watcher and close its connections, release the leases, leave."""
        await cancel_and_wait(self._loops)
        self._loops = []
        for watch in list(self._watches.values()):
            self._retire(watch, release=True, reason="shutdown")
        while self._watchers:
            await asyncio.gather(*self._watchers, return_exceptions=True)
        try:
            await self._leases.leave()
        except RedisError as exc:
            log.warning("idle.leave_failed", owner=self.owner_id, error=str(exc))
        log.info("idle.stopped", owner=self.owner_id)

    # -- ownership -----------------------------------------------------------------

    async def _scan_loop(self) -> None:
        while True:
            try:
                await self._scan()
            except Exception:
                # Database or Redis trouble: the leases already held keep being
                # renewed by their own loop; the next scan tries again.
                log.exception("idle.scan_failed", owner=self.owner_id)
            self._scan_soon.clear()
            try:
                await asyncio.wait_for(
                    self._scan_soon.wait(), self._settings.idle_scan_interval_seconds
                )
            except TimeoutError:
                pass

    async def _scan(self) -> None:
        live = await self._leases.heartbeat()
        async with self._sessionmaker() as session:
            candidates = await accounts_to_watch(session, tenant_ids=self._tenant_ids)
        wanted: dict[uuid.UUID, AccountToWatch] = {}
        for candidate in candidates:
            refused = self._parked.get(candidate.id)
            if refused is not None:
                if candidate.credentials_version <= refused:
                    continue
                del self._parked[candidate.id]
            wanted[candidate.id] = candidate

        for account_id, watch in list(self._watches.items()):
            current = wanted.get(account_id)
            if current is None:
                self._retire(watch, release=True, reason="not_wanted")
            elif (
                current.credentials_version > watch.credentials_version
                or idle_mailbox_setting(current.sync_options) != watch.idle_setting
            ):
                # The control message may have been missed (Redis pub/sub is
                # fire-and-forget); the database is the record.
                self._restart(watch, reason="settings_changed")

        # Hysteresis: take up to the fair share, give back only above share + 1, so
        # a new process gets work without accounts bouncing between the others.
        share = math.ceil(len(wanted) / live)
        for watch in list(self._watches.values())[share + 1 :]:
            self._retire(watch, release=True, reason="rebalance")
        if len(self._watches) >= share:
            return
        unowned = [c for account_id, c in wanted.items() if account_id not in self._watches]
        owners = await self._leases.owners(account_lease_key(c.id) for c in unowned)
        free = [c for c in unowned if owners[account_lease_key(c.id)] is None]
        # Supervisors scanning at the same moment should not all race for the same keys.
        random.shuffle(free)
        for candidate in free:
            if len(self._watches) >= share:
                break
            if await self._leases.acquire(account_lease_key(candidate.id)):
                log.info(
                    "idle.lease_acquired",
                    account_id=str(candidate.id),
                    owner=self.owner_id,
                    live_supervisors=live,
                    share=share,
                )
                self._start_watch(
                    candidate.tenant_id,
                    candidate.id,
                    candidate.credentials_version,
                    idle_mailbox_setting(candidate.sync_options),
                )

    async def _renew_loop(self) -> None:
        interval = self._ttl / 3
        while True:
            try:
                await asyncio.wait_for(self._renew(), interval)
            except Exception as exc:
                if isinstance(exc, RedisError | OSError | TimeoutError):
                    log.warning("idle.renew_failed", owner=self.owner_id, error=str(exc))
                else:
                    log.exception("idle.renew_failed", owner=self.owner_id)
                if self._watches and time.monotonic() - self._renewed_at > self._ttl * 2 / 3:
                    log.warning("idle.leases_expired", owner=self.owner_id)
                    for watch in list(self._watches.values()):
                        self._retire(watch, release=False, reason="lease_unconfirmed")
            await asyncio.sleep(interval)

    async def _renew(self) -> None:
        await self._leases.heartbeat()
        held = {account_lease_key(w.account_id): w for w in self._watches.values()}
        # The TTL runs from when Redis applies the renewal, which is after this instant.
        started = time.monotonic()
        kept = await self._leases.renew(held)
        self._renewed_at = started
        for key, watch in held.items():
            if key not in kept and self._watches.get(watch.account_id) is watch:
                log.warning(
                    "idle.lease_lost", account_id=str(watch.account_id), owner=self.owner_id
                )
                self._retire(watch, release=False, reason="lease_lost")
        # Only the TTL: a refresh racing a disconnect must not bring a deleted key back.
        connected = [idle_status_key(w.account_id) for w in self._watches.values() if w.status]
        if connected:
            async with self._redis.pipeline(transaction=False) as pipe:
                for key in connected:
                    pipe.pexpire(key, self._status_ms)
                await pipe.execute()

    @property
    def _status_ms(self) -> int:
        return int(self._ttl * 2000)

    # -- control messages ----------------------------------------------------------

    async def _control_loop(self) -> None:
        while True:
            pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(ACCOUNT_CONTROL_CHANNEL)
                async for message in pubsub.listen():
                    if message.get("type") == "message":
                        self._on_control(message["data"])
            except Exception as exc:
                # Messages sent meanwhile are lost; the scan catches up from the database.
                if isinstance(exc, RedisError | OSError):
                    log.warning("idle.control_unavailable", owner=self.owner_id, error=str(exc))
                else:
                    log.exception("idle.control_failed", owner=self.owner_id)
                await asyncio.sleep(1.0)
            finally:
                await pubsub.aclose()  # type: ignore[no-untyped-call]

    def _on_control(self, data: bytes | str) -> None:
        try:
            message = json.loads(data)
            tenant_id = str(message["tenant_id"])
            account_id = uuid.UUID(str(message["account_id"]))
            action = message["action"]
        except (ValueError, KeyError, TypeError):
            log.warning("idle.control_invalid", owner=self.owner_id)
            return
        if self._tenant_ids is not None and tenant_id not in self._tenant_ids:
            return
        watch = self._watches.get(account_id)
        if watch is not None and watch.tenant_id != tenant_id:
            return
        if action == "stop":
            self._parked.pop(account_id, None)
            if watch is not None:
                self._retire(watch, release=True, reason="control_stop")
        elif action == "reconnect":
            self._parked.pop(account_id, None)
            if watch is not None:
                self._restart(watch, reason="control_reconnect")
            else:
                # Perhaps parked here a moment ago: let the scan take it now.
                self._scan_soon.set()

    # -- watchers ------------------------------------------------------------------

    def _start_watch(
        self,
        tenant_id: str,
        account_id: uuid.UUID,
        credentials_version: int,
        idle_setting: tuple[str, ...],
        *,
        previous: asyncio.Task[None] | None = None,
    ) -> None:
        watch = _Watch(
            tenant_id=tenant_id,
            account_id=account_id,
            credentials_version=credentials_version,
            idle_setting=idle_setting,
            log=log.bind(account_id=str(account_id), owner=self.owner_id),
            previous=previous,
        )
        self._watches[watch.account_id] = watch
        watch.task = asyncio.create_task(
            self._watch_account(watch), name=f"idle-watch-{watch.account_id}"
        )
        self._watchers.add(watch.task)
        watch.task.add_done_callback(self._watchers.discard)

    def _restart(self, watch: _Watch, *, reason: str) -> None:
        """Replace the watcher (the lease stays held); the new one reloads the account."""
        watch.log.info("idle.restart", reason=reason)
        if watch.task is not None:
            watch.task.cancel()
        self._start_watch(
            watch.tenant_id,
            watch.account_id,
            watch.credentials_version,
            watch.idle_setting,
            previous=watch.task,
        )

    def _retire(self, watch: _Watch, *, release: bool, reason: str) -> None:
        """Stop the watcher now; release the lease once its connections are closed."""
        if self._watches.get(watch.account_id) is watch:
            del self._watches[watch.account_id]
        watch.log.info("idle.watch_stopped", reason=reason)
        if watch.task is not None:
            watch.task.cancel()
        if release:
            finisher = asyncio.create_task(self._release_after(watch))
            self._watchers.add(finisher)
            finisher.add_done_callback(self._watchers.discard)

    async def _release_after(self, watch: _Watch) -> None:
        if watch.task is not None:
            await cancel_and_wait([watch.task])
        await self._release(watch)

    async def _release(self, watch: _Watch) -> None:
        try:
            await self._leases.release(account_lease_key(watch.account_id))
            watch.log.info("idle.lease_released")
        except RedisError as exc:
            # It expires within one TTL anyway.
            watch.log.warning("idle.release_failed", error=str(exc))

    async def _watch_account(self, watch: _Watch) -> None:
        """Keep the account watched until it is refused, gone, or this task is cancelled."""
        if watch.previous is not None:
            await asyncio.wait([watch.previous])
            watch.previous = None
        attempt = 0
        while True:
            watch.watching_since = None
            try:
                await self._connect_and_watch(watch)
            except _AuthRecorded:
                self._park(watch)
                break
            except ImapAuthError as exc:
                # The engine owns account.state; a refused login is definitive.
                await self._engine.record_login_refused(watch.tenant_id, watch.account_id, str(exc))
                self._park(watch)
                break
            except _AccountUnwatchable:
                watch.log.info("idle.account_unwatchable")
                break
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
        if self._watches.get(watch.account_id) is watch:
            del self._watches[watch.account_id]
            await self._release(watch)

    def _park(self, watch: _Watch) -> None:
        self._parked[watch.account_id] = watch.credentials_version
        watch.log.warning("idle.auth_refused", credentials_version=watch.credentials_version)

    async def _load(self, watch: _Watch) -> MailServer:
        async with self._sessionmaker() as session:
            account = await AccountRepository(session, watch.tenant_id).get(watch.account_id)
        if account is None or account.state in UNWATCHED_STATES:
            raise _AccountUnwatchable
        watch.credentials_version = account.credentials_version
        watch.idle_setting = idle_mailbox_setting(account.sync_options or {})
        return imap_server(self._secrets, account)

    async def _connect(self, server: MailServer) -> _Connection:
        imap = await connect_imap(
            server, io_timeout=self._settings.mail_connect_timeout_seconds, tls=self._tls
        )
        return _Connection(imap)

    async def _connect_and_watch(self, watch: _Watch) -> None:
        server = await self._load(watch)
        connections: list[_Connection] = []
        try:
            connections.append(await self._connect(server))
            listed = await connections[0].imap.list_mailboxes()
            mailboxes = resolve_idle_mailboxes(watch.idle_setting, listed)
            budget = self._settings.idle_max_connections_per_account
            if len(mailboxes) > budget:
                watch.log.warning("idle.over_budget", unwatched=mailboxes[budget:])
                mailboxes = mailboxes[:budget]
            while len(connections) < len(mailboxes):
                connections.append(await self._connect(server))
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
            watch.status = json.dumps(
                {
                    "owner": self.owner_id,
                    "mailboxes": mailboxes,
                    "connected_at": datetime.now(UTC).isoformat(),
                }
            )
            await self._redis.set(
                idle_status_key(watch.account_id), watch.status, px=self._status_ms
            )
            watch.watching_since = time.monotonic()
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
            await self._disconnect(watch, connections)

    async def _mirrored(self, watch: _Watch) -> bool:
        async with self._sessionmaker() as session:
            return await MailboxRepository(session, watch.tenant_id).has_synced(watch.account_id)

    async def _disconnect(self, watch: _Watch, connections: list[_Connection]) -> None:
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

    async def _run_syncs(self, watch: _Watch, queue: _SyncQueue) -> None:
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
        self, watch: _Watch, queue: _SyncQueue, connection: _Connection
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
