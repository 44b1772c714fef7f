"""Scale: thousands of accounts in IDLE on one api process, then on two, then one killed.

What one run does (issue 16), everything measured from outside the api processes:

- a private Dovecot (`tests/fixtures/dovecot.py`) with the limits it needs for
  `--accounts` x 2 IDLE sessions (one imap process each: `service imap
  { process_limit }`, inotify instances raised), embedded PostgreSQL and Redis;
- `--accounts` Dovecot users registered through the API of a setup `mailsvc serve`
  (IDLE off) while one `mailsvc worker` mirrors them; both stop once every account
  is mirrored. Each account mirrors INBOX and Sent (`sync_options.include_mailboxes`)
  and watches them (the default `idle_mailboxes`): two IDLE connections per account;
- **baseline**: `mailsvc serve --workers 1` with every account `disabled`, warmed
  up with list requests; its RSS is the process without accounts;
- **one process**: the accounts enabled, a fresh `mailsvc serve --workers 1` (IDLE on,
  every other setting mailsvc's default: lease TTL 30 s, scan every 5 s). Measured:
  seconds from spawning it until every account is in IDLE (its `mailsvc:idle:<id>`
  status written after the spawn), RSS (VmRSS, /proc/PID/status) once the catch-up
  syncs are done, minus the baseline, per account; idle CPU (utime + stime from
  /proc/PID/stat over `--idle-seconds`); delivery-to-visible for `--deliveries`
  messages delivered over LMTP to random accounts, one every 0.2 s (from LMTP's
  answer until PostgreSQL holds the row, polled every 10 ms); and the latency of
  `GET /api/messages?limit=50` sent at `--list-rate` per second on a fixed schedule
  (timed from the scheduled instant) from the moment the process serves until the
  deliveries are done;
- **two processes**: that one stopped (SIGTERM: its leases are released), two fresh
  ones spawned together: the same figures for each, then the one holding more
  accounts SIGKILLed and the seconds until the survivor watches every account.

The machine is shared: the load average and the CPU of everything else during each
step are printed beside the figures.

`--tracemalloc` replaces the api processes by an `IdleSupervisor` in the bench process
under tracemalloc (where the memory per account goes); `--profile-idle DIR` runs py-spy
(`PY_SPY` or on PATH) on each api process over the idle CPU window.

Run: `.venv/bin/python bench/scale.py [--accounts 2000] [--deliveries 100]
[--list-rate 20] [--idle-seconds 30] [--json FILE] [--profile-idle DIR]
[--tracemalloc]`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import os
import random
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import asyncpg
import httpx
import redis.asyncio as aioredis
from api_idle import imap_connections, register_accounts
from harness import LIVE_CHILDREN, Results, percentile, quietly, run_main, summary_ms
from pydantic import SecretStr
from tests.fixtures.databases import asyncpg_dsn
from tests.fixtures.dovecot import DovecotServer

from mailsvc.account.logins import AccountLogins
from mailsvc.config import Settings, generate_encryption_key
from mailsvc.embedded import free_loopback_port
from mailsvc.kit.crypto import SecretBox
from mailsvc.kit.db import create_engine, create_sessionmaker
from mailsvc.kit.redis import create_redis
from mailsvc.sync.engine import SyncEngine
from mailsvc.sync.idle import IdleSupervisor
from mailsvc.sync.lease import SUPERVISORS_KEY
from mailsvc.sync.parser import ParserPool
from search import (
    MailsvcServer,
    Servers,
    machine_description,
    mint_token,
    serve_env,
    start_mailsvc,
    start_process,
    start_servers,
    stop_process,
    wait_until_serving,
)

TENANT = "scale"
PY_SPY = os.environ.get("PY_SPY") or shutil.which("py-spy") or "py-spy"
INOTIFY_INSTANCES_PATH = Path("/proc/sys/fs/inotify/max_user_instances")
INOTIFY_INSTANCES = 16384
LEASE_TTL_SECONDS = 30.0  # mailsvc's default IDLE_LEASE_TTL_SECONDS
IDLE_TARGET_SECONDS = 60.0
RSS_TARGET_KB = 25.0
CPU_TARGET_PERCENT = 5.0
VISIBLE_P95_TARGET_MS = 1000.0
FAILOVER_TARGET_SECONDS = LEASE_TTL_SECONDS + 10
DELIVERY_INTERVAL_SECONDS = 0.2
VISIBLE_TIMEOUT_SECONDS = 30.0
WAIT_TIMEOUT_SECONDS = 600.0


def dovecot_limits(accounts: int) -> str:
    # One imap process per IDLE session plus the catch-up syncs' sessions.
    return f"service imap {{\n  process_limit = {accounts * 3 + 100}\n}}\n"


def raise_inotify_limit() -> str:
    try:
        current = int(INOTIFY_INSTANCES_PATH.read_text())
        if current < INOTIFY_INSTANCES:
            INOTIFY_INSTANCES_PATH.write_text(f"{INOTIFY_INSTANCES}\n")
            return f"raised from {current} to {INOTIFY_INSTANCES}"
        return str(current)
    except (OSError, ValueError) as exc:
        return f"unchanged ({exc}): past it Dovecot polls every 5 s instead of pushing"


# -- what the machine and a process do ------------------------------------------------


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def machine_cpu() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine so far."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:9]]
    tick = os.sysconf("SC_CLK_TCK")
    idle = values[3] + values[4]
    return (sum(values) - idle) / tick, sum(values) / tick


def process_cpu(pid: int) -> float:
    """utime + stime of `pid`, seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def process_rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


def server_pid(server: MailsvcServer) -> int:
    """The process that runs the app: with `--workers 1`, `mailsvc serve` itself (the
    sync parser processes in its group are not it)."""
    return server.process.pid


def idle_cpu_percent(pid: int, seconds: float) -> tuple[float, float]:
    """(the process's CPU, the machine's busy CPU) over `seconds`, % of one core."""
    cpu, (busy, _) = process_cpu(pid), machine_cpu()
    time.sleep(seconds)
    cpu_after, (busy_after, _) = process_cpu(pid), machine_cpu()
    return (cpu_after - cpu) / seconds * 100, (busy_after - busy) / seconds * 100


def wait_until_quiet(pid: int, *, below_percent: float = 10.0, within: float = 120.0) -> float:
    """Seconds until the process used under `below_percent` of a core for 3 s running."""
    started = time.monotonic()
    while time.monotonic() - started < within:
        percent, _ = idle_cpu_percent(pid, 3.0)
        if percent < below_percent:
            break
    return time.monotonic() - started


# -- accounts ------------------------------------------------------------------------


async def register(url: str, token: str, dovecot: DovecotServer, count: int) -> list[str]:
    return await register_accounts(
        url,
        token,
        dovecot,
        count,
        prefix="scale",
        sync_options={"include_mailboxes": ["INBOX", "Sent"]},
    )


async def mirrored_count(database_url: str) -> int:
    connection = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        return int(
            await connection.fetchval(
                "SELECT count(DISTINCT account_id) FROM mailboxes "
                "WHERE tenant_id = $1 AND last_synced_at IS NOT NULL",
                TENANT,
            )
        )
    finally:
        await connection.close()


async def set_state(database_url: str, state: str) -> None:
    connection = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        await connection.execute(
            "UPDATE accounts SET state = $1 WHERE tenant_id = $2", state, TENANT
        )
    finally:
        await connection.close()


async def idle_owners(
    redis: aioredis.Redis, accounts: list[str], since: datetime | None
) -> dict[str, str]:
    """account -> owner of every account in IDLE (on a connection made after `since`)."""
    keys = [f"mailsvc:idle:{account}" for account in accounts]
    owners = {}
    for account, value in zip(accounts, await redis.mget(keys), strict=True):
        if value is not None:
            status = json.loads(value)
            if since is None or datetime.fromisoformat(status["connected_at"]) > since:
                owners[account] = str(status["owner"])
    return owners


async def wait_all_idle(
    redis_url: str,
    accounts: list[str],
    since: datetime,
    *,
    owner_of: set[str] | None = None,
    what: str,
) -> tuple[float, dict[str, str]]:
    """Seconds from `since` until every account is in IDLE: on a connection made after
    `since`, or (with `owner_of`) held by one of those owners; and who holds each."""
    redis = aioredis.from_url(redis_url)
    reported = time.monotonic()
    try:
        while True:
            owners = await idle_owners(redis, accounts, None if owner_of else since)
            if owner_of is not None:
                owners = {a: o for a, o in owners.items() if o in owner_of}
            elapsed = (datetime.now(UTC) - since).total_seconds()
            if len(owners) == len(accounts):
                return elapsed, owners
            if elapsed > WAIT_TIMEOUT_SECONDS:
                raise RuntimeError(f"{what}: {len(accounts) - len(owners)} not in IDLE")
            if time.monotonic() - reported > 10:
                print(f"  {what}: {len(owners)} of {len(accounts)} after {elapsed:.0f} s")
                reported = time.monotonic()
            await asyncio.sleep(0.2)
    finally:
        await redis.aclose()


async def supervisor_owners(redis_url: str) -> dict[int, str]:
    """pid -> owner id of the live IDLE supervisors (`host:pid:token`, sync/lease.py)."""
    redis = aioredis.from_url(redis_url, decode_responses=True)
    try:
        members = await redis.zrange(SUPERVISORS_KEY, 0, -1)
    finally:
        await redis.aclose()
    return {int(member.split(":")[1]): member for member in members}


async def wait_balanced(
    redis_url: str, accounts: list[str], processes: int, *, within: float = 120.0
) -> tuple[float, dict[str, str]]:
    """Seconds until `processes` supervisors share the accounts (each holds at least its
    fair share - 2: the supervisor keeps share + 1 before giving back); who holds each."""
    redis = aioredis.from_url(redis_url)
    started = time.monotonic()
    try:
        while True:
            owners = await idle_owners(redis, accounts, None)
            counts = Counter(owners.values())
            fair = len(accounts) / processes
            if len(owners) == len(accounts) and (
                processes == 1 or (len(counts) == processes and min(counts.values()) >= fair - 2)
            ):
                return time.monotonic() - started, owners
            if time.monotonic() - started > within:
                print(f"  not balanced after {within:.0f} s: {dict(counts)}")
                return time.monotonic() - started, owners
            await asyncio.sleep(0.5)
    finally:
        await redis.aclose()


# -- load while measuring --------------------------------------------------------------


@dataclass
class ListLoad:
    """GET /api/messages at a fixed rate against `urls` in turn, timed from schedule."""

    urls: list[str]
    token: str
    rate: float
    latencies: list[tuple[float, float]] = field(default_factory=list)
    errors: int = 0
    # While set, scheduled requests are skipped (the idle CPU window).
    paused: bool = False

    async def run(self, stop: asyncio.Event) -> None:
        headers = {"Authorization": f"Bearer {self.token}"}
        async with httpx.AsyncClient(headers=headers, timeout=30) as client:
            pending: set[asyncio.Task[None]] = set()
            start = time.monotonic()
            index = 0
            while not stop.is_set():
                scheduled = start + index / self.rate
                await asyncio.sleep(max(0.0, scheduled - time.monotonic()))
                url = self.urls[index % len(self.urls)]
                index += 1
                if self.paused:
                    continue
                task = asyncio.create_task(self._one(client, url, scheduled))
                pending.add(task)
                task.add_done_callback(pending.discard)
            await asyncio.gather(*pending)

    async def _one(self, client: httpx.AsyncClient, url: str, scheduled: float) -> None:
        try:
            response = await client.get(f"{url}/api/messages", params={"limit": 50})
            response.raise_for_status()
        except httpx.HTTPError:
            self.errors += 1
            return
        self.latencies.append((scheduled, time.monotonic() - scheduled))

    def between(self, start: float, end: float) -> list[float]:
        return [latency for at, latency in self.latencies if start <= at < end]


def delivery(index: int, message_id: str) -> bytes:
    message = EmailMessage()
    message["From"] = "Sender <sender@example.test>"
    message["To"] = "Recipient <rcpt@example.test>"
    message["Subject"] = f"scale delivery {index}"
    message["Message-ID"] = f"<{message_id}>"
    message.set_content(f"Delivery {index} of bench/scale.py.\n")
    return message.as_bytes()


@dataclass
class Deliveries:
    """Delivery-to-visible seconds, and the deliveries not visible within the timeout."""

    seconds: list[float] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)


async def deliveries(
    dovecot: DovecotServer, database_url: str, users: list[str], count: int, seed: int
) -> Deliveries:
    """Deliver `count` messages to random accounts and time each until it is visible."""
    rng = random.Random(seed)
    probe = await asyncpg.connect(asyncpg_dsn(database_url))
    delivered: dict[str, tuple[float, str]] = {}
    visible: dict[str, float] = {}
    lost: set[str] = set()

    async def poll(stop: asyncio.Event) -> None:
        while not (stop.is_set() and len(visible) + len(lost) == len(delivered)):
            waiting = [m for m in delivered if m not in visible and m not in lost]
            if waiting:
                rows = await probe.fetch(
                    "SELECT message_id_header FROM messages WHERE tenant_id = $1 "
                    "AND message_id_header = ANY($2::text[])",
                    TENANT,
                    [f"<{m}>" for m in waiting] + waiting,
                )
                now = time.monotonic()
                for row in rows:
                    visible.setdefault(str(row[0]).strip("<>"), now)
            now = time.monotonic()
            for m in waiting:
                if m not in visible and now - delivered[m][0] > VISIBLE_TIMEOUT_SECONDS:
                    lost.add(m)
            await asyncio.sleep(0.01)

    stop = asyncio.Event()
    poller = asyncio.create_task(poll(stop))
    try:
        for index in range(count):
            message_id = f"scale-{index}-{secrets.token_hex(6)}@bench.example.test"
            user = rng.choice(users)
            await dovecot.adeliver(user, delivery(index, message_id))
            delivered[message_id] = (time.monotonic(), user)
            await asyncio.sleep(DELIVERY_INTERVAL_SECONDS)
        stop.set()
        await poller
    finally:
        poller.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await poller
        await probe.close()
    return Deliveries(
        [visible[m] - delivered[m][0] for m in delivered if m in visible],
        sorted(delivered[m][1] for m in lost),
    )


# -- the run ---------------------------------------------------------------------------


@dataclass
class ProcessFigures:
    """What one api process did with the accounts it held."""

    label: str
    pid: int
    owner: str = ""
    accounts: int = 0
    rss_kib: int = 0
    cpu_percent: float = 0.0


@dataclass
class Step:
    """One configuration (one process, two processes): its figures."""

    name: str
    all_idle_seconds: float = 0.0
    imap_connections: int = 0
    settle_seconds: float = 0.0
    processes: list[ProcessFigures] = field(default_factory=list)
    machine_busy_percent: float = 0.0
    visible: list[float] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    list_startup: list[float] = field(default_factory=list)
    list_idle: list[float] = field(default_factory=list)
    list_deliveries: list[float] = field(default_factory=list)
    list_errors: int = 0
    load: dict[str, str] = field(default_factory=dict)
    balanced_seconds: float = 0.0


class Bench:
    def __init__(
        self, args: argparse.Namespace, stack: contextlib.ExitStack, workdir: Path
    ) -> None:
        self.args = args
        self.stack = stack
        self.workdir = workdir
        self.servers: Servers = start_servers(workdir, stack)
        self.jwt_secret = secrets.token_urlsafe(48)
        self.token = mint_token(self.jwt_secret, TENANT)
        self.overrides = {
            "IDLE_ENABLED": "true",
            "ALLOW_PRIVATE_HOSTS": "true",
            # The api processes and the worker must open each other's sealed secrets.
            "ENCRYPTION_KEY": generate_encryption_key(),
        }
        self.dovecot = DovecotServer(extra_config=dovecot_limits(args.accounts))
        self.accounts: list[str] = []
        self.users: list[str] = []
        self.baseline_rss_kib = 0

    def serve(self, name: str, **extra: str) -> MailsvcServer:
        return start_mailsvc(
            self.servers, self.jwt_secret, self.workdir, name=name, **{**self.overrides, **extra}
        )

    def setup(self) -> None:
        print(f"inotify instances: {raise_inotify_limit()}")
        self.dovecot.start()
        self.stack.callback(quietly(self.dovecot.stop))
        setup = self.serve("setup", IDLE_ENABLED="false")
        worker = start_process(
            [sys.executable, "-m", "mailsvc", "worker"],
            env=serve_env(self.servers, self.jwt_secret, **self.overrides),
            cwd=self.workdir,
            log_path=self.workdir / "worker.log",
        )
        try:
            started = time.monotonic()
            self.accounts = asyncio.run(
                register(setup.url, self.token, self.dovecot, self.args.accounts)
            )
            self.users = [f"scale{i:05d}" for i in range(self.args.accounts)]
            print(f"{len(self.accounts)} accounts registered in {time.monotonic() - started:.0f} s")
            while (done := asyncio.run(mirrored_count(self.servers.database_url))) < len(
                self.accounts
            ):
                if time.monotonic() - started > WAIT_TIMEOUT_SECONDS:
                    raise RuntimeError(f"only {done} accounts mirrored")
                time.sleep(2)
            print(f"all mirrored {time.monotonic() - started:.0f} s after the first registration")
        finally:
            stop_process(worker)
            stop_process(setup.process)

    def profile_idle(self, label: str, pid: int) -> subprocess.Popen[bytes] | None:
        """py-spy over the idle window (`--profile-idle DIR`): where the idle CPU goes."""
        if self.args.profile_idle is None:
            return None
        self.args.profile_idle.mkdir(parents=True, exist_ok=True)
        output = self.args.profile_idle / f"{label.replace(' ', '-').replace('#', '')}.txt"
        return subprocess.Popen(
            [PY_SPY, "record", "--pid", str(pid), "--duration", str(int(self.args.idle_seconds)),
             "--rate", "50", "--nonblocking", "--format", "raw", "--output", str(output)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip

    def serve_together(self, name: str, count: int) -> list[MailsvcServer]:
        """`count` api processes spawned at once (IDLE on), once all of them serve."""
        spawned = []
        for index in range(count):
            port = free_loopback_port()
            log_path = self.workdir / f"{name}-{index}.log"
            command = [sys.executable, "-m", "mailsvc", "serve", "--host", "127.0.0.1",
                       "--port", str(port), "--workers", "1"]  # fmt: skip
            process = start_process(
                command,
                env=serve_env(self.servers, self.jwt_secret, **self.overrides),
                cwd=self.workdir,
                log_path=log_path,
            )
            spawned.append(MailsvcServer(f"http://127.0.0.1:{port}", process, log_path))
        for server in spawned:
            wait_until_serving(server.url, server.process, server.log_path)
        return spawned

    def baseline(self) -> None:
        """RSS of an api process with IDLE on and no account to watch, warmed up."""
        asyncio.run(set_state(self.servers.database_url, "disabled"))
        server = self.serve("baseline")
        try:
            load = ListLoad([server.url], self.token, self.args.list_rate)
            asyncio.run(run_for(load, 10.0))
            time.sleep(3)
            pid = server_pid(server)
            self.baseline_rss_kib = process_rss_kib(pid)
        finally:
            stop_process(server.process)
        asyncio.run(set_state(self.servers.database_url, "connected"))
        print(f"baseline api process: RSS {self.baseline_rss_kib / 1024:.1f} MiB")

    def measure(self, name: str, count: int) -> tuple[Step, list[MailsvcServer]]:
        """Start `count` api processes together and measure them with all accounts."""
        step = Step(name)
        step.load["before"] = loadavg()
        since = datetime.now(UTC)
        spawned = time.monotonic()
        servers = self.serve_together(name, count)
        stop = asyncio.Event()
        load = ListLoad([s.url for s in servers], self.token, self.args.list_rate)

        async def measured() -> None:
            generator = asyncio.create_task(load.run(stop))
            try:
                step.all_idle_seconds, owners = await wait_all_idle(
                    self.servers.redis_url, self.accounts, since, what=name
                )
                marks["idle"] = time.monotonic()
                step.imap_connections = imap_connections(self.dovecot.imap_port)
                owner_of_pid = await supervisor_owners(self.servers.redis_url)
                step.balanced_seconds, owners = await wait_balanced(
                    self.servers.redis_url, self.accounts, count
                )
                for index, server in enumerate(servers):
                    pid = server_pid(server)
                    owner = owner_of_pid.get(pid, "")
                    held = sum(1 for o in owners.values() if o == owner)
                    step.processes.append(ProcessFigures(f"{name} #{index + 1}", pid, owner, held))
                step.settle_seconds = await asyncio.to_thread(
                    lambda: max(wait_until_quiet(p.pid) for p in step.processes)
                )
                step.load["idle"] = loadavg()
                for figures in step.processes:
                    figures.rss_kib = process_rss_kib(figures.pid)
                # Idle means idle: no list requests in this window.
                load.paused = True
                await asyncio.sleep(1.0)
                busy = machine_cpu()[0]
                cpu = {p.pid: process_cpu(p.pid) for p in step.processes}
                profilers = [self.profile_idle(f"{name} #{i + 1}", p.pid)
                             for i, p in enumerate(step.processes)]  # fmt: skip
                await asyncio.sleep(self.args.idle_seconds)
                for profiler in profilers:
                    if profiler is not None:
                        profiler.wait()
                load.paused = False
                marks["cpu"] = time.monotonic()
                await asyncio.sleep(10.0)  # list latency with everything idle
                for figures in step.processes:
                    used = process_cpu(figures.pid) - cpu[figures.pid]
                    figures.cpu_percent = used / self.args.idle_seconds * 100
                step.machine_busy_percent = (machine_cpu()[0] - busy) / self.args.idle_seconds * 100
                marks["deliveries"] = time.monotonic()
                delivered = await deliveries(
                    self.dovecot,
                    self.servers.database_url,
                    self.users,
                    self.args.deliveries,
                    seed=count,
                )
                step.visible, step.missing = delivered.seconds, delivered.missing
                step.load["deliveries"] = loadavg()
                marks["end"] = time.monotonic()
            finally:
                stop.set()
                await generator

        marks = {"spawned": spawned}
        asyncio.run(measured())
        step.list_startup = load.between(marks["spawned"], marks["idle"])
        step.list_idle = load.between(marks["cpu"], marks["deliveries"])
        step.list_deliveries = load.between(marks["deliveries"], marks["end"])
        step.list_errors = load.errors
        return step, servers

    def failover(self, servers: list[MailsvcServer], step: Step) -> tuple[float, str]:
        """SIGKILL the process holding more accounts; seconds until the other holds all."""
        victim_figures = max(step.processes, key=lambda p: p.accounts)
        survivor_figures = next(p for p in step.processes if p is not victim_figures)
        victim = next(s for s in servers if server_pid(s) == victim_figures.pid)
        since = datetime.now(UTC)
        os.killpg(victim.process.pid, signal.SIGKILL)
        victim.process.wait()
        LIVE_CHILDREN.discard(victim.process)
        seconds, _ = asyncio.run(
            wait_all_idle(
                self.servers.redis_url,
                self.accounts,
                since,
                owner_of={survivor_figures.owner},
                what="failover",
            )
        )
        return seconds, victim_figures.label


async def run_for(load: ListLoad, seconds: float) -> None:
    stop = asyncio.Event()
    generator = asyncio.create_task(load.run(stop))
    await asyncio.sleep(seconds)
    stop.set()
    await generator


def ms(values: list[float], fraction: float) -> str:
    return f"{percentile(values, fraction) * 1000:.1f} ms" if values else "n/a"


def report_step(results: Results, step: Step, baseline_kib: int, *, targets: bool) -> None:
    name = step.name
    results.add(
        f"{name}: all accounts in IDLE after spawn",
        f"{step.all_idle_seconds:.1f} s ({step.imap_connections:,} IMAP connections; "
        + (f"shared out {step.balanced_seconds:.0f} s later; " if len(step.processes) > 1 else "")
        + f"catch-up syncs done {step.settle_seconds:.0f} s later)",
        f"< {IDLE_TARGET_SECONDS:.0f} s" if targets else "",
        step.all_idle_seconds < IDLE_TARGET_SECONDS if targets else None,
    )
    for figures in step.processes:
        per_account = (figures.rss_kib - baseline_kib) * 1.024 / max(1, figures.accounts)
        results.add(
            f"{figures.label}: RSS per account",
            f"{per_account:.1f} KB ({figures.accounts} accounts; RSS "
            f"{figures.rss_kib / 1024:.1f} MiB, baseline {baseline_kib / 1024:.1f} MiB)",
            f"< {RSS_TARGET_KB:.0f} KB" if targets else "",
            per_account < RSS_TARGET_KB if targets else None,
        )
        results.add(
            f"{figures.label}: idle CPU",
            f"{figures.cpu_percent:.2f}% of a core (machine busy {step.machine_busy_percent:.0f}%"
            " of one core over the same window)",
            f"< {CPU_TARGET_PERCENT:.0f}%" if targets else "",
            figures.cpu_percent < CPU_TARGET_PERCENT if targets else None,
        )
    p95 = percentile(step.visible, 0.95) * 1000
    results.add(
        f"{name}: delivery-to-visible ({len(step.visible)} to random accounts)",
        f"p50 {ms(step.visible, 0.5)}, p95 {p95:.1f} ms, max {max(step.visible) * 1000:.1f} ms"
        + (
            f"; NOT VISIBLE within {VISIBLE_TIMEOUT_SECONDS:.0f} s: {len(step.missing)} "
            f"(to {', '.join(step.missing[:5])})"
            if step.missing
            else ""
        ),
        f"p95 < {VISIBLE_P95_TARGET_MS:.0f} ms" if targets else "",
        p95 < VISIBLE_P95_TARGET_MS and not step.missing if targets else None,
    )
    for label, values in (
        ("while connecting", step.list_startup),
        ("all idle", step.list_idle),
        ("during deliveries", step.list_deliveries),
    ):
        results.add(
            f"{name}: list {label}",
            f"p50 {ms(values, 0.5)}, p99 {ms(values, 0.99)} ({len(values)} requests)",
        )
    results.add(
        f"{name}: load average",
        "; ".join(f"{k} {v}" for k, v in step.load.items())
        + (f"; list errors {step.list_errors}" if step.list_errors else ""),
    )
    results.data[name] = {
        "all_idle_seconds": step.all_idle_seconds,
        "imap_connections": step.imap_connections,
        "settle_seconds": step.settle_seconds,
        "balanced_seconds": step.balanced_seconds,
        "processes": [figures.__dict__ for figures in step.processes],
        "machine_busy_percent": step.machine_busy_percent,
        "visible": summary_ms(step.visible),
        "not_visible": step.missing,
        "list_startup": summary_ms(step.list_startup) if step.list_startup else None,
        "list_idle": summary_ms(step.list_idle) if step.list_idle else None,
        "list_deliveries": summary_ms(step.list_deliveries) if step.list_deliveries else None,
        "list_errors": step.list_errors,
        "loadavg": step.load,
    }


async def memory_profile(bench: Bench, results: Results, top: int = 15) -> None:
    """Where the per-account memory goes: an `IdleSupervisor` in this process watches
    every account under tracemalloc; the growth from before its start until all are in
    IDLE and their catch-up syncs are done, grouped by source line and by file."""
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        database_url=bench.servers.database_url,
        redis_url=bench.servers.redis_url,
        encryption_key=SecretStr(bench.overrides["ENCRYPTION_KEY"]),
        allow_private_hosts=True,
        log_level="WARNING",
    )
    database = create_engine(settings.async_database_url, pool_size=10)
    sessionmaker = create_sessionmaker(database)
    redis = create_redis(settings.required_redis_url)
    box = SecretBox(*settings.encryption_keys())
    logins = AccountLogins(sessionmaker=sessionmaker, redis=redis, secrets=box, settings=settings)
    parser = ParserPool(processes=1)
    engine = SyncEngine(sessionmaker=sessionmaker, logins=logins, settings=settings, parser=parser)
    supervisor = IdleSupervisor(
        sessionmaker=sessionmaker,
        redis=redis,
        engine=engine,
        logins=logins,
        settings=settings,
        owner_id=f"bench-{secrets.token_hex(4)}",
        tenant_ids={TENANT},
    )
    await parser.parse([b"Subject: warm-up\r\n\r\nwarm\r\n"])
    gc.collect()
    tracemalloc.start(8)
    before = tracemalloc.take_snapshot()
    since = datetime.now(UTC)
    supervisor.start()
    try:
        seconds, _ = await wait_all_idle(
            bench.servers.redis_url, bench.accounts, since, what="tracemalloc"
        )
        await asyncio.sleep(20)  # the catch-up syncs end
        gc.collect()
        after = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
        await supervisor.stop()
        parser.close()
        await logins.aclose()
        await redis.aclose()
        await database.dispose()
    accounts = len(bench.accounts)
    by_file = after.compare_to(before, "filename")
    total = sum(stat.size_diff for stat in by_file)
    results.add(
        f"tracemalloc: Python heap growth with {accounts} accounts in IDLE (in-process)",
        f"{total / accounts / 1000:.1f} KB per account (all in IDLE after {seconds:.1f} s)",
    )
    lines = []
    for stat in by_file[:top]:
        lines.append(
            f"{stat.size_diff / accounts:8.0f} B/account {stat.count_diff / accounts:6.1f} "
            f"blocks/account  {stat.traceback[0].filename}"
        )
    by_line = after.compare_to(before, "lineno")
    lines.append("")
    for stat in by_line[:top]:
        frame = stat.traceback[0]
        lines.append(
            f"{stat.size_diff / accounts:8.0f} B/account {stat.count_diff / accounts:6.1f} "
            f"blocks/account  {frame.filename}:{frame.lineno}"
        )
    print("\n".join(lines))
    results.data["tracemalloc"] = {"per_account_bytes": total / accounts, "top": lines}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--accounts", type=int, default=2000, help="accounts in IDLE")
    parser.add_argument("--deliveries", type=int, default=100, help="messages per step")
    parser.add_argument("--list-rate", type=float, default=20.0, help="list requests/s")
    parser.add_argument("--idle-seconds", type=float, default=30.0, help="idle CPU window")
    parser.add_argument("--skip-one", action="store_true", help="only the two-process step")
    parser.add_argument("--json", type=Path, default=None, help="write figures as JSON")
    parser.add_argument(
        "--profile-idle",
        type=Path,
        default=None,
        help=f"py-spy ({PY_SPY}) each api process over the idle CPU window into DIR",
    )
    parser.add_argument(
        "--tracemalloc",
        action="store_true",
        help="instead of the api processes: where the memory per account goes, in-process",
    )


def run_bench(args: argparse.Namespace, stack: contextlib.ExitStack) -> Results:
    results = Results()
    results.data["command"] = " ".join([".venv/bin/python", "bench/scale.py", *sys.argv[1:]])
    workdir = Path(tempfile.mkdtemp(prefix="mailsvc-bench-scale-"))
    stack.callback(shutil.rmtree, workdir, ignore_errors=True)
    bench = Bench(args, stack, workdir)
    machine = machine_description(postgres=bench.servers.postgres_version)
    results.data["machine"] = machine
    print(
        f"machine: {machine['nproc']} CPUs ({machine['cpu']}), {machine['memory_gib']} GiB; "
        f"code {machine['code']}; load average {loadavg()}"
    )
    bench.setup()
    if args.tracemalloc:
        asyncio.run(memory_profile(bench, results))
        return results
    bench.baseline()
    results.data["baseline_rss_kib"] = bench.baseline_rss_kib
    if not args.skip_one:
        step, servers = bench.measure("1 process", 1)
        for server in servers:
            stop_process(server.process)
        report_step(results, step, bench.baseline_rss_kib, targets=True)
    step, servers = bench.measure("2 processes", 2)
    report_step(results, step, bench.baseline_rss_kib, targets=False)
    seconds, victim = bench.failover(servers, step)
    results.add(
        f"failover: SIGKILL {victim}, survivor watches all",
        f"{seconds:.1f} s after the kill",
        f"< lease TTL + 10 = {FAILOVER_TARGET_SECONDS:.0f} s",
        seconds < FAILOVER_TARGET_SECONDS,
    )
    results.data["failover_seconds"] = seconds
    for server in servers:
        if server.process.poll() is None:
            stop_process(server.process)
    print(f"load average at the end: {loadavg()}")
    return results


def main() -> None:
    run_main(__doc__.split("\n\n")[0], add_arguments, run_bench)


if __name__ == "__main__":
    main()
