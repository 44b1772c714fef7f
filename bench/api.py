"""API benchmark (issues 4 and 14): mailsvc's hot reads against the floor of their stack.

One run, everything on loopback and started here (and stopped again, also on Ctrl-C):

1. PostgreSQL and Redis (embedded, or the servers of DATABASE_URL / REDIS_URL; a fresh
   database either way, migrated), loaded with the mailbox of bench/searchcorpus.py
   (10,000 messages by default) as bench/search.py loads it (COPY), the tenant's
   search index built the product's way (`SEARCH_BACKEND=tantivy mailsvc search
   reindex --tenant bench`, `--search-backend` to change it), then `VACUUM (ANALYZE)`.
   The bench account's state is set to `disabled` (its credentials are placeholders:
   no IDLE watcher may try it; reads ignore account state);
2. the check that the floor endpoint and mailsvc answer the same bytes: the body of
   `GET /floor` (below) must equal that of mailsvc's `GET /api/messages?limit=50` for
   the same tenant, or the bench stops there;
3. each server in turn, alone on the machine but for the load generator, each route
   measured twice on the same server process:
   - at saturation, closed loop: `wrk -t2 -c64 -d12s --latency --timeout 30s` with
     the bearer token, after a 3-second warm-up with the same options; routes with
     rotating URLs go through a generated wrk Lua script (each wrk thread takes the
     paths in turn from its own offset). Its req/s is the route's maximum;
   - at HALF that maximum, open loop: bench/openloop.py as its own process (uvloop,
     raw asyncio streams, keep-alive connections opened as needed up to 256, run at
     nice -5 when allowed so that other work on a shared machine does not delay its
     schedule), requests at fixed intervals from the start, each timed from its
     SCHEDULED send time (so queueing behind a slow answer counts; the generator's
     own ~1-2 ms timer granularity counts too, see openloop.py), 2 s of warm-up then
     12 s measured: p50/p99/p99.9/max, achieved rate, non-2xx and errors;
   every path of the route is requested once before (each must answer 200; the list
   50 items) and ten after. The servers, in this order:
   - the minimal endpoint of bench/api_child.py (`GET /status` -> `{"status":"ok"}`,
     FastAPI in uvicorn as `mailsvc serve` runs it). Its half-rate run is also the
     check that the open-loop generator keeps up: achieved >= 99% of offered and its
     own dispatch lag p99 under 5 ms at a rate above any other measured here;
   - the floor (`api_child.py --floor-dsn`): FastAPI + an asyncpg pool with the
     product's server settings, running mailsvc's list statement
     (`read_repository.list_statement`) and answering `read_repository.page_body`:
     the same SQL and bytes as the list, without auth, rate limit or middleware;
   - `mailsvc serve --workers N` for each N of `--workers` (1,2), three routes each:
     list `GET /api/messages?limit=50` (the newest 50 summaries); get
     `GET /api/messages/{id}` over 500 ids of the corpus in turn (seeded); search
     `GET /api/messages?q=...&limit=50` over the 200 queries bench/search.py uses
     (bench/searchcorpus.py: words, phrases, OR, exclusions, from:, subject:, dates,
     has:attachment, is:unread, German, Russian, Chinese), in a seeded shuffled order;
   - the minimal endpoint again, saturation only (against its first run: how steady
     the machine was);
4. with 500 accounts in IDLE (`--idle-accounts`, skipped with `--skip-idle`): a
   private Dovecot (tests/fixtures/dovecot.py, its imap process limit raised to
   4,096) with 500 users, `mailsvc serve --workers N` (N: `--idle-workers`, by
   default the largest of `--workers`) with IDLE on, and `mailsvc worker` for the
   first mirrors; the 500 accounts registered through the API in a tenant of their
   own (`POST /api/accounts?verify=false`; IDLE on INBOX and Sent, the default: two
   IMAP connections each, 1,000 in all), then, once `GET /api/sync/status/{id}` says
   every one is `connected` with IDLE connected, the worker is stopped (its periodic
   jobs would otherwise run during the measurement) and list, get and search are
   measured open loop at the SAME offered rates as in step 3 for that N (so the p99s
   compare directly), plus the list at saturation; afterwards the sync status must
   still show all 500 in IDLE. The serving processes' RSS before the accounts and
   with all of them in IDLE gives the memory per watched account. The kernel's
   `fs.inotify.max_user_instances` is raised to 4,096 when allowed (each IDLE-ing
   Dovecot imap process holds an instance; past the limit Dovecot polls instead).

mailsvc runs with its defaults except: IDLE off (but in step 4), rate limits raised
far above the request rate (the limiter still counts every request in Redis),
LOG_LEVEL=WARNING, SEARCH_BACKEND and SEARCH_INDEX_DIR as above. wrk's `--timeout` is
raised from its 2 s default so that slow responses count instead of being dropped.
wrk and the open-loop generator share the two cores with the server, PostgreSQL and
Redis; server CPU is that of the server's whole process group (uvicorn's workers).

Targets (issue 14): list req/s >= 0.5x the floor's with one worker (aim 0.8x); list
>= 1,500 req/s with `--workers 2`; at half of each route's maximum, p99 < 25 ms for
list and get and < 50 ms for search, with and without the 500 IDLE accounts.

Run: `.venv/bin/python bench/api.py [--messages 10000] [--duration 12] [--connections
64] [--threads 2] [--workers 1,2] [--idle-accounts 500] [--idle-workers N]
[--skip-idle] [--search-backend tantivy] [--json FILE] [--profile DIR]`; ~8-10
minutes here with the defaults. `--profile DIR` adds one more list run (one worker)
under `py-spy record` (collapsed stacks in DIR/api-list.txt; not timed).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import asyncpg
import httpx
from api_idle import (
    DOVECOT_EXTRA_CONFIG,
    IDLE_TENANT,
    IdleSetup,
    describe_pauses,
    hold_idle_accounts,
    not_idle,
    raise_inotify_limit,
)
from api_load import (
    WRK,
    OpenLoopRun,
    Route,
    Watched,
    WrkRun,
    find_watched,
    process_group_of,
    run_openloop,
    run_wrk,
)
from harness import Results, quietly, run_main
from pydantic import SecretStr
from searchcorpus import Mailbox, build_queries, generate_mailbox, rows_of
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine
from tests.fixtures.databases import asyncpg_dsn
from tests.fixtures.dovecot import DovecotServer

from mailsvc.auth.revocations import api_key_subject
from mailsvc.auth.service import create_api_key
from mailsvc.auth.tokens import TokenCodec
from mailsvc.config import Settings, generate_encryption_key
from mailsvc.embedded import free_loopback_port
from search import (
    TENANT,
    MailsvcServer,
    Servers,
    build_index,
    load_database,
    machine_description,
    mint_token,
    start_mailsvc,
    start_process,
    start_servers,
    stop_process,
    table_mib,
    vacuum_analyze,
    wait_process,
    wait_until_serving,
)

BENCH_DIR = Path(__file__).resolve().parent
CHILD_SCRIPT = BENCH_DIR / "api_child.py"
PAGE = 50
LIST_PATH = f"/api/messages?limit={PAGE}"
GET_IDS = 500
WARM_UP_SECONDS = 3
HALF = 0.5
# The product's read pool when nothing caps it (ops/capacity.py DEFAULT_POOL_SIZE).
FLOOR_POOL_SIZE = 10

FLOOR_RATIO_TARGET = 0.5
FLOOR_RATIO_AIM = 0.8
WORKERS_TARGET = 2
WORKERS_RPS_TARGET = 1500.0
P99_TARGETS_MS = {"list": 25.0, "get": 25.0, "search": 50.0}
GENERATOR_ACHIEVED_MIN = 0.99
GENERATOR_LAG_P99_MS = 5.0
OTHER_CPU_LIMIT = 0.2


# -- one route: saturation, then half of it --------------------------------------------


@dataclass
class RouteRun:
    saturation: WrkRun | None
    half: OpenLoopRun | None
    response_bytes: float


def check_responses(base_url: str, route: Route, token: str, *, every: bool) -> float:
    """GET the route's paths (all when `every`, else up to 10): each must be a 200
    (holding `route.items` items when set); their mean size in bytes."""
    paths = route.paths if every else route.paths[:10]
    sizes = []
    with httpx.Client(
        base_url=base_url, headers={"Authorization": f"Bearer {token}"}, timeout=60
    ) as client:
        for path in paths:
            response = client.get(path)
            if response.status_code != 200:
                raise RuntimeError(f"GET {path}: {response.status_code} {response.text[:500]}")
            if route.items is not None and len(response.json()["items"]) != route.items:
                raise RuntimeError(f"GET {path}: {len(response.json()['items'])} items")
            sizes.append(len(response.content))
    return sum(sizes) / len(sizes)


def measure_route(
    label: str,
    base_url: str,
    route: Route,
    token: str,
    watched: Watched,
    args: argparse.Namespace,
    *,
    rate: float | None = None,
    saturate: bool = True,
    open_loop: bool = True,
) -> RouteRun:
    """The route at saturation (wrk), then open loop at `rate` (by default half the
    maximum wrk measured); every path is checked first, ten of them afterwards."""
    size = check_responses(base_url, route, token, every=True)
    saturation = None
    if saturate:
        print(
            f"{label}: wrk warm-up {WARM_UP_SECONDS} s, then {args.duration} s (load average "
            f"{os.getloadavg()[0]:.2f}) ..."
        )
        run_wrk(base_url, route, token, watched, args, seconds=WARM_UP_SECONDS)
        saturation = run_wrk(base_url, route, token, watched, args, seconds=args.duration)
        print(f"  saturation: {saturation.describe()}")
    half = None
    if rate is None and saturation is not None:
        rate = saturation.requests_per_second * HALF
    if open_loop and rate is not None:
        print(f"{label}: open loop at {rate:,.0f}/s for {args.duration} s ...")
        half = run_openloop(base_url, route, token, watched, args, rate=rate)
        print(f"  fixed rate: {half.describe()}")
    check_responses(base_url, route, token, every=False)  # still answering properly
    return RouteRun(saturation, half, size)


# -- servers -----------------------------------------------------------------------------


def start_child(workdir: Path, label: str, *extra: str) -> tuple[str, subprocess.Popen[bytes]]:
    """bench/api_child.py on a free port (minimal endpoint, or the floor)."""
    port = free_loopback_port()
    log_path = workdir / f"{label}.log"
    process = start_process(
        [sys.executable, str(CHILD_SCRIPT), "--port", str(port), *extra],
        env=dict(os.environ),
        cwd=workdir,
        log_path=log_path,
    )
    url = f"http://127.0.0.1:{port}"
    wait_until_serving(url, process, log_path, path="/status")
    return url, process


def serve_supports_workers() -> bool:
    """Whether this checkout's `mailsvc serve` takes `--workers`."""
    done = subprocess.run(
        [sys.executable, "-m", "mailsvc", "serve", "--help"],
        capture_output=True,
        text=True,
        check=False,
    )
    return "--workers" in done.stdout


async def api_key_token(database_url: str, jwt_secret: str, tenant: str) -> str:
    """A token for a new API key of `tenant`, as `POST /auth/login` issues it (all
    scopes, 12 hours)."""
    settings = Settings(_env_file=None, database_url=database_url, jwt_secret=SecretStr(jwt_secret))
    engine = create_async_engine(settings.async_database_url)
    try:
        async with async_sessionmaker(engine).begin() as session:
            created = await create_api_key(session, name="bench", tenants=[tenant])
            key_id, scopes = created.row.id, list(created.row.scopes)
    finally:
        await engine.dispose()
    return TokenCodec(settings).issue(
        subject=api_key_subject(key_id), tenants=[tenant], scopes=scopes, expires_in=12 * 3600
    )


def check_floor(floor_url: str, mailsvc_url: str, token: str) -> int:
    """The floor's body must be mailsvc's list body, byte for byte; its size."""
    floor = httpx.get(f"{floor_url}/floor", timeout=30)
    product = httpx.get(
        f"{mailsvc_url}{LIST_PATH}", headers={"Authorization": f"Bearer {token}"}, timeout=30
    )
    if floor.status_code != 200 or product.status_code != 200:
        raise RuntimeError(
            f"floor {floor.status_code} {floor.text[:300]}; mailsvc {product.status_code} "
            f"{product.text[:300]}"
        )
    if floor.content != product.content:
        a, b = floor.content, product.content
        at = next(
            (i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b))
        )
        raise RuntimeError(
            f"the floor's body is not mailsvc's list body ({len(a):,} vs {len(b):,} bytes; "
            f"first difference at byte {at}):\n  floor:   {a[max(0, at - 80) : at + 80]!r}\n"
            f"  mailsvc: {b[max(0, at - 80) : at + 80]!r}"
        )
    return len(floor.content)


# -- routes of the corpus -----------------------------------------------------------------


def corpus_routes(mailbox: Mailbox, seed: int, workdir: Path) -> dict[str, Route]:
    """list, get (500 ids in turn) and search (the 200 queries in turn), seeded."""
    rng = random.Random(seed * 104729 + 14)
    ids = rng.sample(
        [str(message.id) for message in mailbox.messages], min(GET_IDS, len(mailbox.messages))
    )
    queries = [query.q for query in build_queries(mailbox, seed)]
    rng.shuffle(queries)
    routes = {
        "list": Route("list", [LIST_PATH], items=PAGE),
        "get": Route("get", [f"/api/messages/{message_id}" for message_id in ids]),
        "search": Route(
            "search", [f"/api/messages?{urlencode({'q': q, 'limit': PAGE})}" for q in queries]
        ),
    }
    for route in routes.values():
        route.write_files(workdir)
    return routes


async def disable_accounts(database_url: str, tenant: str) -> None:
    """The bench account has placeholder credentials: no IDLE watcher may try it."""
    connection = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        await connection.execute(
            "UPDATE accounts SET state = 'disabled' WHERE tenant_id = $1", tenant
        )
    finally:
        await connection.close()


# -- the run ------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--messages", type=int, default=10_000, help="mailbox size")
    parser.add_argument("--seed", type=int, default=1, help="corpus seed")
    parser.add_argument(
        "--duration", type=int, default=12, help="seconds per measurement (wrk and open loop)"
    )
    parser.add_argument("--connections", type=int, default=64, help="wrk connections")
    parser.add_argument("--threads", type=int, default=2, help="wrk threads")
    parser.add_argument(
        "--workers", default="1,2", help="`mailsvc serve --workers N` for each N listed"
    )
    parser.add_argument(
        "--idle-accounts", type=int, default=500, help="accounts held in IDLE in the last step"
    )
    parser.add_argument(
        "--idle-workers", type=int, help="serve workers in the IDLE step (largest of --workers)"
    )
    parser.add_argument("--skip-idle", action="store_true", help="skip the IDLE step")
    parser.add_argument(
        "--token",
        default="api-key",
        choices=("api-key", "operator"),
        help="an API key's token (its revocation status is checked on every request), "
        "or an operator's from `mailsvc token create` (not checked)",
    )
    parser.add_argument(
        "--search-backend",
        default="tantivy",
        choices=("tantivy", "postgres"),
        help="SEARCH_BACKEND",
    )
    parser.add_argument("--json", type=Path, help="also write every figure to this file")
    parser.add_argument(
        "--profile", type=Path, help="py-spy one more (untimed) list run into DIR/api-list.txt"
    )


@dataclass
class Bench:
    """What every step of one run shares."""

    args: argparse.Namespace
    stack: contextlib.ExitStack
    workdir: Path
    servers: Servers
    services: Watched
    """PostgreSQL and Redis, whose CPU each run reports beside the server's."""
    jwt_secret: str
    token: str
    """The bench tenant's."""
    search_env: dict[str, str]
    with_workers: bool
    """Whether `mailsvc serve` takes `--workers` (it did not before issue 14)."""

    def watch(self, server_group: int) -> Watched:
        return replace(self.services, server_group=server_group)

    def mailsvc(self, name: str, workers: int, **overrides: str) -> MailsvcServer:
        return start_mailsvc(
            self.servers,
            self.jwt_secret,
            self.workdir,
            name=name,
            workers=workers if self.with_workers else None,
            **self.search_env,
            **overrides,
        )

    def measure(self, label: str, url: str, route: Route, group: int, **options: Any) -> RouteRun:
        return measure_route(label, url, route, self.token, self.watch(group), self.args, **options)


def run_bench(args: argparse.Namespace, stack: contextlib.ExitStack) -> Results:
    results = Results()
    results.data["command"] = " ".join([".venv/bin/python", "bench/api.py", *sys.argv[1:]])
    worker_counts = [int(n) for n in str(args.workers).split(",") if n.strip()]
    with_workers = serve_supports_workers()
    if not with_workers:
        print(
            "NOTE: this `mailsvc serve` has no --workers: one process each time; runs with "
            "more than one worker are skipped"
        )
        worker_counts = [1]
    idle_workers = args.idle_workers or max(worker_counts)
    if not args.skip_idle and idle_workers not in worker_counts:
        raise SystemExit(f"--idle-workers {idle_workers} must be one of --workers")
    wrk_version = subprocess.run([WRK, "-v"], capture_output=True, text=True, check=False)
    workdir = Path(tempfile.mkdtemp(prefix="mailsvc-bench-api-"))
    stack.callback(shutil.rmtree, workdir, ignore_errors=True)

    started = time.perf_counter()
    servers = start_servers(workdir, stack)
    machine = machine_description(
        wrk=(wrk_version.stdout or wrk_version.stderr).splitlines()[0].strip(),
        postgres=servers.postgres_version,
        postgres_settings=servers.postgres_settings,
        uvicorn_loop_http=_uvicorn_implementations(),
    )
    results.data["machine"] = machine
    print(
        f"machine: {machine['nproc']} CPUs ({machine['cpu']}), {machine['memory_gib']} GiB; "
        f"PostgreSQL {machine['postgres']}; {machine['wrk']}; uvicorn "
        f"{machine['uvicorn_loop_http']}; code {machine['code']}"
    )
    mailbox = generate_mailbox(args.messages, args.seed)
    for _ in rows_of(mailbox.messages):
        pass
    asyncio.run(load_database(servers.database_url, mailbox, tenant=TENANT, seed=args.seed))
    asyncio.run(disable_accounts(servers.database_url, TENANT))
    index_dir = workdir / "index"
    build = build_index(
        servers, args.search_backend, index_dir, workdir, [TENANT], len(mailbox.messages)
    )
    asyncio.run(vacuum_analyze(servers.database_url))
    table_mb = asyncio.run(table_mib(servers.database_url, "messages"))
    print(
        f"{len(mailbox.messages):,} messages loaded and indexed ({build.backend}: "
        f"{build.seconds:.1f} s) in {time.perf_counter() - started:.1f} s (messages table "
        f"{table_mb:,.0f} MiB)"
    )
    results.data["corpus"] = {"messages": len(mailbox.messages), "seed": args.seed}
    results.data["index"] = asdict(build)
    routes = corpus_routes(mailbox, args.seed, workdir)
    status_route = Route("minimal", ["/status"])
    floor_route = Route("floor", ["/floor"], items=PAGE)
    for route in (status_route, floor_route):
        route.write_files(workdir)
    jwt_secret = secrets.token_urlsafe(48)
    bench = Bench(
        args=args,
        stack=stack,
        workdir=workdir,
        servers=servers,
        services=find_watched(0, workdir, servers.redis_url),
        jwt_secret=jwt_secret,
        # As `POST /auth/login` issues it: for an API key, whose status every request
        # checks (the per-process cache of auth/revocations.py).
        token=(
            asyncio.run(api_key_token(servers.database_url, jwt_secret, TENANT))
            if args.token == "api-key"
            else mint_token(jwt_secret, TENANT)
        ),
        search_env={"SEARCH_BACKEND": args.search_backend, "SEARCH_INDEX_DIR": str(index_dir)},
        with_workers=with_workers,
    )
    floor_args = ("--floor-dsn", asyncpg_dsn(servers.database_url), "--tenant", TENANT,
                  "--pool-size", str(FLOOR_POOL_SIZE))  # fmt: skip

    # The floor must answer mailsvc's bytes, or its figure means nothing.
    floor_url, floor_process = start_child(workdir, "floor-check", *floor_args)
    server = bench.mailsvc("mailsvc-check", 1)
    try:
        floor_bytes = check_floor(floor_url, server.url, bench.token)
    finally:
        stop_process(server.process)
        stop_process(floor_process)
    print(f"floor and mailsvc list bodies identical ({floor_bytes:,} bytes)")

    runs: dict[str, RouteRun] = {}
    url, process = start_child(workdir, "minimal")
    try:
        runs["minimal"] = bench.measure("minimal", url, status_route, process.pid)
    finally:
        stop_process(process)
    url, process = start_child(workdir, "floor", *floor_args)
    try:
        runs["floor"] = bench.measure("floor", url, floor_route, process.pid)
    finally:
        stop_process(process)
    for workers in worker_counts:
        server = bench.mailsvc(f"mailsvc-{workers}w", workers)
        try:
            for name, route in routes.items():
                label = f"mailsvc {workers}w {name}"
                runs[label] = bench.measure(label, server.url, route, server.process.pid)
        finally:
            stop_process(server.process)
    url, process = start_child(workdir, "minimal-again")
    try:
        runs["minimal (again)"] = bench.measure(
            "minimal (again)", url, status_route, process.pid, open_loop=False
        )
    finally:
        stop_process(process)

    idle_setup = None if args.skip_idle else idle_step(bench, routes, runs, idle_workers)
    if args.profile is not None:
        profile(bench, routes["list"])
    report(results, runs, args, worker_counts, idle_workers, idle_setup, floor_bytes)
    return results


def idle_step(
    bench: Bench, routes: dict[str, Route], runs: dict[str, RouteRun], workers: int
) -> IdleSetup:
    """List, get and search at the earlier half rates with the accounts in IDLE."""
    print(f"inotify instances: {raise_inotify_limit()}")
    dovecot = DovecotServer(extra_config=DOVECOT_EXTRA_CONFIG)
    dovecot.start()
    bench.stack.callback(quietly(dovecot.stop))
    # `dovecot -F -c <config>` leads the process group of all its imap processes.
    bench.services = replace(
        bench.services, dovecot_group=process_group_of(str(dovecot.config_path))
    )
    overrides = {
        "IDLE_ENABLED": "true",
        "ALLOW_PRIVATE_HOSTS": "true",
        # The api and the worker must open each other's sealed credentials.
        "ENCRYPTION_KEY": generate_encryption_key(),
    }
    server = bench.mailsvc("mailsvc-idle", workers, **overrides)
    try:
        # Warm the processes up before their RSS is taken as the baseline.
        check_responses(server.url, routes["list"], bench.token, every=False)
        setup = hold_idle_accounts(
            bench.args,
            bench.servers,
            server,
            bench.jwt_secret,
            {**bench.search_env, **overrides},
            dovecot,
            bench.workdir,
        )
        print(
            f"all {len(setup.accounts)} accounts synced and in IDLE "
            f"{setup.all_idle_seconds:.1f} s after the first registration "
            f"({setup.imap_connections:,} IMAP connections); serving processes' RSS "
            f"{setup.rss_before_mib:.0f} -> {setup.rss_idle_mib:.0f} MiB"
        )
        for name, route in routes.items():
            before = runs[f"mailsvc {workers}w {name}"]
            assert before.half is not None
            label = f"IDLE {workers}w {name}"
            runs[label] = bench.measure(
                label,
                server.url,
                route,
                server.process.pid,
                rate=float(before.half.report["offered_rate"]),
                saturate=name == "list",
            )
        token = mint_token(bench.jwt_secret, IDLE_TENANT)
        left = asyncio.run(not_idle(server.url, token, setup.accounts))
        if left:
            raise RuntimeError(f"{len(left)} accounts left IDLE during the measurement")
        print(f"all {len(setup.accounts)} accounts still in IDLE after the measurements")
        # One process answers (any of them with several workers): its own pauses since
        # it started, the accounts' first syncs included.
        setup.pauses = describe_pauses(httpx.get(f"{server.url}/metrics", timeout=30).text)
        print(f"pauses of one serving process: {setup.pauses}")
    finally:
        stop_process(server.process)
    return setup


def profile(bench: Bench, route: Route) -> None:
    """One more list run (one worker) under py-spy; not timed."""
    directory: Path = bench.args.profile
    directory.mkdir(parents=True, exist_ok=True)
    output = directory / "api-list.txt"
    server = bench.mailsvc("mailsvc-profiled", 1)
    duration = bench.args.duration
    try:
        print(f"profiling mailsvc under the same load with py-spy into {output} ...")
        py_spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
        spy = start_process(
            [py_spy, "record", "--pid", str(server.process.pid), "--subprocesses", "--rate",
             "100", "--duration", str(duration), "--format", "raw", "--output", str(output)],
            env=dict(os.environ), cwd=bench.workdir, log_path=bench.workdir / "py-spy.log",
        )  # fmt: skip
        watched = bench.watch(server.process.pid)
        run_wrk(server.url, route, bench.token, watched, bench.args, seconds=duration)
        wait_process(spy, timeout=duration + 60)
    finally:
        stop_process(server.process)


def report(
    results: Results,
    runs: dict[str, RouteRun],
    args: argparse.Namespace,
    worker_counts: Sequence[int],
    idle_workers: int,
    idle: IdleSetup | None,
    floor_bytes: int,
) -> None:
    shape = f"wrk -t{args.threads} -c{args.connections}, {args.duration} s"
    for label, run in runs.items():
        what = label
        if label in ("minimal", "minimal (again)"):
            what = f"{label}: GET /status ({run.response_bytes:.0f} B)"
        elif label == "floor":
            what = f"floor: GET /floor (FastAPI + asyncpg, mailsvc's list SQL, {floor_bytes:,} B)"
        else:
            what = f"{label} ({run.response_bytes:,.0f} B mean)"
        if run.saturation is not None:
            results.add(f"{what}: saturation ({shape})", run.saturation.describe())
        if run.half is not None:
            results.add(f"{what}: open loop, half of max", run.half.describe())

    generator = runs["minimal"].half
    assert generator is not None
    achieved = generator.report["achieved_rate"] / generator.report["offered_rate"]
    lag = generator.report["dispatch_lag_ms"]["p99"]
    results.add(
        "open-loop generator keeps up (minimal endpoint at half its max)",
        f"{generator.report['offered_rate']:,.0f}/s offered: {achieved:.1%} achieved, "
        f"dispatch lag p99 {lag:.2f} ms",
        f">= {GENERATOR_ACHIEVED_MIN:.0%} and lag p99 < {GENERATOR_LAG_P99_MS:.0f} ms",
        achieved >= GENERATOR_ACHIEVED_MIN and lag < GENERATOR_LAG_P99_MS,
    )
    # Its lateness counts in every latency it reports: say how late it was at worst.
    worst_lag, worst = max(
        (run.half.report["dispatch_lag_ms"]["p99"], label)
        for label, run in runs.items()
        if run.half is not None
    )
    results.add(
        "open-loop generator's own dispatch lag, worst p99 of all its runs",
        f"{worst_lag:.2f} ms ({worst})",
        f"< {GENERATOR_LAG_P99_MS:.0f} ms",
        worst_lag < GENERATOR_LAG_P99_MS,
    )
    floor = runs["floor"].saturation
    assert floor is not None
    if 1 in worker_counts:
        listing = runs["mailsvc 1w list"].saturation
        assert listing is not None
        ratio = listing.requests_per_second / floor.requests_per_second
        results.add(
            f"list req/s / floor req/s, one worker (aim {FLOOR_RATIO_AIM:.1f}x)",
            f"{listing.requests_per_second:,.0f} / {floor.requests_per_second:,.0f} = {ratio:.2f}x",
            f">= {FLOOR_RATIO_TARGET:.1f}x",
            ratio >= FLOOR_RATIO_TARGET,
        )
        results.data["floor_ratio"] = ratio
    if WORKERS_TARGET in worker_counts:
        listing = runs[f"mailsvc {WORKERS_TARGET}w list"].saturation
        assert listing is not None
        results.add(
            f"list req/s with --workers {WORKERS_TARGET}",
            f"{listing.requests_per_second:,.0f}",
            f">= {WORKERS_RPS_TARGET:,.0f}",
            listing.requests_per_second >= WORKERS_RPS_TARGET,
        )
    else:
        results.add(f"list req/s with --workers {WORKERS_TARGET}", "not measured")
    prefixes = [f"mailsvc {n}w" for n in worker_counts]
    if idle is not None:
        prefixes.append(f"IDLE {idle_workers}w")
    for prefix in prefixes:
        for name, target in P99_TARGETS_MS.items():
            half = runs[f"{prefix} {name}"].half
            assert half is not None
            results.add(
                f"{name} p99 at half its max ({prefix})",
                f"{half.p99_ms:.1f} ms at {half.report['offered_rate']:,.0f}/s",
                f"< {target:.0f} ms",
                half.p99_ms < target,
            )
    if idle is not None:
        count = len(idle.accounts)
        per_account_kb = (idle.rss_idle_mib - idle.rss_before_mib) * 1024 / count
        results.add(
            f"{count} accounts in IDLE ({idle_workers} worker(s))",
            f"all synced and in IDLE {idle.all_idle_seconds:.1f} s after the first registration "
            f"(registering took {idle.register_seconds:.1f} s), {idle.imap_connections:,} IMAP "
            f"connections; serving processes' RSS "
            f"{idle.rss_before_mib:.0f} -> {idle.rss_idle_mib:.0f} MiB "
            f"({per_account_kb:.1f} KiB per account)",
        )
        results.add("pauses of one serving process (since it started)", idle.pauses)
        results.data["idle"] = asdict(idle) | {
            "accounts": count,
            "rss_per_account_kib": per_account_kb,
        }
    clean = all(
        (run.saturation is None or run.saturation.clean) and (run.half is None or run.half.clean)
        for run in runs.values()
    )
    results.add(
        "every response 200 (checked before/after each run; non-2xx and errors of each run)",
        "yes" if clean else "NO: see the runs above",
    )
    # CPU that none of the bench's processes used: other work on a shared machine.
    busiest, busiest_label = max(
        (measured.cpu.get("other", 0.0), f"{label}, {kind}")
        for label, run in runs.items()
        for kind, measured in (("saturation", run.saturation), ("open loop", run.half))
        if measured is not None
    )
    results.add(
        "other work on the machine (CPU-s/s no process of the bench used), worst run",
        f"{busiest:.2f} ({busiest_label})",
        f"< {OTHER_CPU_LIMIT:.1f} (figures of busier runs are suspect)",
        busiest < OTHER_CPU_LIMIT,
    )
    minimal_first = runs["minimal"].saturation
    minimal_again = runs["minimal (again)"].saturation
    assert minimal_first is not None
    assert minimal_again is not None
    drift = minimal_again.requests_per_second / minimal_first.requests_per_second
    results.add(
        "steadiness: minimal endpoint req/s, last run / first run",
        f"{minimal_again.requests_per_second:,.0f} / {minimal_first.requests_per_second:,.0f}"
        f" = {drift:.0%}",
    )
    results.data.update(
        runs={
            label: {
                "saturation": None if run.saturation is None else asdict(run.saturation),
                "half": None if run.half is None else asdict(run.half),
                "response_bytes": run.response_bytes,
            }
            for label, run in runs.items()
        },
        minimal_drift=drift,
        run_at=datetime.now(UTC).isoformat(timespec="seconds"),
    )


def _uvicorn_implementations() -> str:
    """What uvicorn's `auto` loop and http settings resolve to here."""
    loop = "uvloop" if _importable("uvloop") else "asyncio"
    http = "httptools" if _importable("httptools") else "h11"
    return f"loop={loop}, http={http}"


def _importable(name: str) -> bool:
    try:
        __import__(name)
    except ImportError:
        return False
    return True


def main() -> None:
    run_main(__doc__.split("\n\n")[0], add_arguments, run_bench)


if __name__ == "__main__":
    main()
