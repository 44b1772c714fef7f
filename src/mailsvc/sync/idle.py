"""The IDLE supervisor: live IMAP connections for the accounts this process owns.

It runs inside the api process and only notices change; the sync engine does the
work. Every `IDLE_SCAN_INTERVAL_SECONDS` it lists the accounts that should be
watched (all tenants), takes a fair share of them through Redis leases
(`sync/lease.py`), and runs one watcher task per account it holds:

    acquired ─► connect, LIST, EXAMINE each IDLE mailbox (one connection each;
                  │ at most MAX_CONNECTING_WATCHERS of a process connect at once)
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
message be lost, through the next scan. A supervisor that stops (its process shuts
down) releases every lease, leaves the live count and sends `rescan` on the same
channel, so the others take its accounts at once instead of at their next scan.
While connected, `mailsvc:idle:<account>` says who watches which mailboxes since
when (`idle_status`, for the status API).

This module owns the leases, the scans and the control messages; one account's
connections, IDLE loops, syncs and backoff are in `sync/idle_watch.py`, the status
key in `sync/idle_status.py`.

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
- `account.state` is written by the engine only (and by an operator disabling or
  enabling the account); a login refused to a watcher is handed to
  `SyncEngine.record_login_refused`, which records `auth_error`.

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
import time
import uuid
from collections.abc import Collection

import redis.asyncio as aioredis
import structlog
from redis.exceptions import RedisError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from mailsvc.account.control import ACCOUNT_CONTROL_CHANNEL
from mailsvc.account.logins import AccountLogins
from mailsvc.account.repository import AccountToWatch, accounts_to_watch
from mailsvc.config import Settings
from mailsvc.kit.tasks import cancel_and_wait
from mailsvc.sync.engine import SyncEngine
from mailsvc.sync.idle_status import idle_status_key, idle_status_ttl_ms
from mailsvc.sync.idle_watch import AccountWatch, AccountWatcher, WatchEnd, idle_mailbox_setting
from mailsvc.sync.lease import LeaseManager, account_lease_key

log = structlog.get_logger("mailsvc.sync.idle")

# A control message to every supervisor: accounts were released, scan now.
RESCAN = "rescan"


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
        logins: AccountLogins,
        settings: Settings,
        owner_id: str,
        tenant_ids: Collection[str] | None = None,
    ) -> None:
        self._sessionmaker = sessionmaker
        self._redis = redis
        self._settings = settings
        self.owner_id = owner_id
        self._tenant_ids = frozenset(tenant_ids) if tenant_ids is not None else None
        self._ttl = settings.idle_lease_ttl_seconds
        self._status_ms = idle_status_ttl_ms(self._ttl)
        self._leases = LeaseManager(redis, owner_id=owner_id, ttl_seconds=self._ttl)
        self._watcher = AccountWatcher(
            sessionmaker=sessionmaker,
            redis=redis,
            engine=engine,
            logins=logins,
            settings=settings,
            leases=self._leases,
        )
        self._watches: dict[uuid.UUID, AccountWatch] = {}
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
        """Stop every watcher and close its connections, release the leases, leave, and
        have the other supervisors scan at once. A second call does nothing."""
        loops, self._loops = self._loops, []
        if not loops:
            return
        await cancel_and_wait(loops)
        for watch in list(self._watches.values()):
            self._retire(watch, release=True, reason="shutdown")
        while self._watchers:
            await asyncio.gather(*self._watchers, return_exceptions=True)
        try:
            await self._leases.leave()
            # Without it the others would find the released accounts at their next
            # scan, up to IDLE_SCAN_INTERVAL_SECONDS later.
            await self._redis.publish(ACCOUNT_CONTROL_CHANNEL, json.dumps({"action": RESCAN}))
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
            if message["action"] == RESCAN:
                self._scan_soon.set()
                return
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
        watch = AccountWatch(
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

    def _restart(self, watch: AccountWatch, *, reason: str) -> None:
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

    def _retire(self, watch: AccountWatch, *, release: bool, reason: str) -> None:
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

    async def _release_after(self, watch: AccountWatch) -> None:
        if watch.task is not None:
            await cancel_and_wait([watch.task])
        await self._release(watch)

    async def _release(self, watch: AccountWatch) -> None:
        try:
            await self._leases.release(account_lease_key(watch.account_id))
            watch.log.info("idle.lease_released")
        except RedisError as exc:
            # It expires within one TTL anyway.
            watch.log.warning("idle.release_failed", error=str(exc))

    async def _watch_account(self, watch: AccountWatch) -> None:
        """Run the account's watch until it ends; park it if refused; give the lease back."""
        if watch.previous is not None:
            await asyncio.wait([watch.previous])
            watch.previous = None
        if await self._watcher.watch_account(watch) is WatchEnd.LOGIN_REFUSED:
            self._park(watch)
        if self._watches.get(watch.account_id) is watch:
            del self._watches[watch.account_id]
            await self._release(watch)

    def _park(self, watch: AccountWatch) -> None:
        self._parked[watch.account_id] = watch.credentials_version
        watch.log.warning("idle.auth_refused", credentials_version=watch.credentials_version)
