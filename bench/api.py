"""API throughput benchmark (issue 4): the message list under load, against a minimal endpoint.

One run, everything on loopback and started here (and stopped again, also on Ctrl-C):

1. PostgreSQL and Redis (embedded, or the servers of DATABASE_URL / REDIS_URL; a fresh
   database either way, migrated), loaded with the mailbox of bench/searchcorpus.py
   (10,000 messages by default) as bench/search.py loads it (COPY, then VACUUM
   (ANALYZE); no search index is built: the list reads none);
2. the minimal endpoint of bench/api_child.py (`GET /status` -> `{"status": "ok"}`) in
   uvicorn with the options `mailsvc serve` uses, then `mailsvc serve` itself (uvicorn,
   one worker), each in turn, alone on the machine but for wrk:
   `wrk -t2 -c64 -d20s --latency --timeout 30s -H "Authorization: Bearer ..." URL`
   after a 5-second warm-up with the same options; mailsvc serves
   `GET /api/messages?limit=50` (the tenant's newest 50 messages, 50 summaries per
   response); the minimal endpoint runs once before and once after mailsvc, and the
   ratio uses the mean of the two (their difference shows how steady the machine was);
3. two diagnostic runs of mailsvc: with LOG_LEVEL=INFO (its default: one JSON access
   line per request) and with the per-tenant rate limiter off (RATE_LIMIT_* = 0),
   to show what each costs (skip with --no-extras).

mailsvc runs with its defaults except: IDLE off, rate limits raised far above the
request rate (the limiter still counts every request in Redis), LOG_LEVEL=WARNING
(uvicorn's access log is at WARNING in both servers). wrk's `--timeout` is raised from
its 2 s default so that slow responses count in the latency figures instead of being
dropped as timeouts. wrk shares the two cores with the server, PostgreSQL and Redis.

Run: `.venv/bin/python bench/api.py [--messages 10000] [--duration 20] [--connections 64]
[--threads 2] [--json FILE] [--no-extras] [--profile DIR]`. `--profile DIR` adds one
more list run under `py-spy record` (collapsed stacks in DIR/api-list.txt; not timed).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import httpx
from searchcorpus import generate_mailbox, rows_of

from mailsvc.embedded import free_loopback_port
from search import (
    TENANT,
    MailsvcServer,
    Results,
    load_database,
    machine_description,
    mint_token,
    run_main,
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
WRK = shutil.which("wrk") or "/usr/bin/wrk"
LIST_PATH = "/api/messages?limit=50"
WARM_UP_SECONDS = 5
RATIO_TARGET = 0.35
P99_TARGET_MS = 100.0

_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3, "h": 3600e3}


@dataclass
class WrkRun:
    """What wrk reported for one run, latencies in milliseconds."""

    requests: int
    seconds: float
    requests_per_second: float
    latency_avg_ms: float
    latency_max_ms: float
    p50_ms: float
    p75_ms: float
    p90_ms: float
    p99_ms: float
    non_2xx_3xx: int
    socket_errors: dict[str, int]
    server_cpu_seconds: float
    machine_idle_cpu_seconds: float
    machine_steal_cpu_seconds: float
    output: str

    def describe(self) -> str:
        errors = sum(self.socket_errors.values())
        return (
            f"{self.requests_per_second:,.0f} req/s, p50 {self.p50_ms:.1f} ms, p99 "
            f"{self.p99_ms:.1f} ms, max {self.latency_max_ms:.0f} ms ({self.requests:,} "
            f"requests; non-2xx/3xx {self.non_2xx_3xx}, socket errors {errors}; server "
            f"{self.server_cpu_seconds / self.seconds:.2f} CPU-s/s; machine idle "
            f"{self.machine_idle_cpu_seconds / self.seconds:.2f}, stolen by the hypervisor "
            f"{self.machine_steal_cpu_seconds / self.seconds:.2f} CPU-s/s)"
        )


def _milliseconds(value: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m|h)", value)
    if match is None:
        raise ValueError(f"not a wrk duration: {value!r}")
    return float(match.group(1)) * _UNITS[match.group(2)]


def parse_wrk(output: str) -> dict[str, Any]:
    """The figures of `wrk --latency` output."""

    def find(pattern: str) -> re.Match[str]:
        match = re.search(pattern, output, re.MULTILINE)
        if match is None:
            raise ValueError(f"wrk output without {pattern!r}:\n{output}")
        return match

    latency = find(r"^\s+Latency\s+(\S+)\s+(\S+)\s+(\S+)")
    done = find(r"^\s+(\d+) requests in ([\d.]+)(us|ms|s|m|h)")
    percentiles = {
        int(match.group(1)): _milliseconds(match.group(2))
        for match in re.finditer(r"^\s+(50|75|90|99)%\s+(\S+)", output, re.MULTILINE)
    }
    errors = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output
    )
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    return {
        "requests": int(done.group(1)),
        "seconds": _milliseconds(done.group(2) + done.group(3)) / 1000,
        "requests_per_second": float(find(r"^Requests/sec:\s+([\d.]+)").group(1)),
        "latency_avg_ms": _milliseconds(latency.group(1)),
        "latency_max_ms": _milliseconds(latency.group(3)),
        "p50_ms": percentiles[50],
        "p75_ms": percentiles[75],
        "p90_ms": percentiles[90],
        "p99_ms": percentiles[99],
        "non_2xx_3xx": int(non_2xx.group(1)) if non_2xx else 0,
        "socket_errors": dict(
            zip(
                ("connect", "read", "write", "timeout"),
                (int(g) for g in errors.groups()) if errors else (0, 0, 0, 0),
                strict=True,
            )
        ),
    }


def _process_cpu_seconds(pid: int) -> float:
    """utime + stime of `pid` (and its reaped children) from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return sum(int(value) for value in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def _idle_and_steal_seconds() -> tuple[float, float]:
    """All CPUs' idle (+ iowait) and steal time from /proc/stat: what nobody used, and
    what the hypervisor gave to other guests (a slower machine, as far as we can tell)."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    tick = os.sysconf("SC_CLK_TCK")
    return (values[3] + values[4]) / tick, values[7] / tick


def run_wrk(
    url: str, token: str, server_pid: int, args: argparse.Namespace, *, seconds: int
) -> WrkRun:
    command = [
        WRK, f"-t{args.threads}", f"-c{args.connections}", f"-d{seconds}s", "--latency",
        "--timeout", "30s", "-H", f"Authorization: Bearer {token}", url,
    ]  # fmt: skip
    cpu_before = _process_cpu_seconds(server_pid)
    idle_before, steal_before = _idle_and_steal_seconds()
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    cpu = _process_cpu_seconds(server_pid) - cpu_before
    idle, steal = _idle_and_steal_seconds()
    if done.returncode != 0:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stderr}\n{done.stdout}")
    return WrkRun(
        **parse_wrk(done.stdout),
        server_cpu_seconds=cpu,
        machine_idle_cpu_seconds=idle - idle_before,
        machine_steal_cpu_seconds=steal - steal_before,
        output=done.stdout,
    )


def check_response(url: str, token: str, *, items: int | None) -> int:
    """One GET: it must be a 200 (and hold `items` items for the list); its size."""
    response = httpx.get(url, headers={"Authorization": f"Bearer {token}"}, timeout=30)
    if response.status_code != 200:
        raise RuntimeError(f"GET {url}: {response.status_code} {response.text[:500]}")
    if items is not None and len(response.json()["items"]) != items:
        raise RuntimeError(f"GET {url}: {len(response.json()['items'])} items, expected {items}")
    return len(response.content)


def measure(
    name: str, url: str, token: str, server_pid: int, args: argparse.Namespace, *, items: int | None
) -> tuple[WrkRun, int]:
    size = check_response(url, token, items=items)
    print(
        f"{name}: warm-up {WARM_UP_SECONDS} s, then {args.duration} s (load average "
        f"{os.getloadavg()[0]:.2f}) ..."
    )
    run_wrk(url, token, server_pid, args, seconds=WARM_UP_SECONDS)
    result = run_wrk(url, token, server_pid, args, seconds=args.duration)
    check_response(url, token, items=items)  # still answering properly afterwards
    return result, size


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--messages", type=int, default=10_000, help="mailbox size")
    parser.add_argument("--seed", type=int, default=1, help="corpus seed")
    parser.add_argument("--duration", type=int, default=20, help="seconds per wrk run")
    parser.add_argument("--connections", type=int, default=64, help="wrk connections")
    parser.add_argument("--threads", type=int, default=2, help="wrk threads")
    parser.add_argument("--json", type=Path, help="also write every figure to this file")
    parser.add_argument(
        "--no-extras", action="store_true", help="skip the LOG_LEVEL=INFO and no-limiter runs"
    )
    parser.add_argument(
        "--profile", type=Path, help="py-spy one more (untimed) list run into DIR/api-list.txt"
    )


def run_bench(args: argparse.Namespace, stack: contextlib.ExitStack) -> Results:
    results = Results()
    results.data["command"] = " ".join([".venv/bin/python", "bench/api.py", *sys.argv[1:]])
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
    asyncio.run(vacuum_analyze(servers.database_url))
    table_mb = asyncio.run(table_mib(servers.database_url, "messages"))
    print(
        f"{len(mailbox.messages):,} messages loaded in "
        f"{time.perf_counter() - started:.1f} s (messages table {table_mb:,.0f} MiB)"
    )
    results.data["corpus"] = {"messages": len(mailbox.messages), "seed": args.seed}
    jwt_secret = secrets.token_urlsafe(48)
    token = mint_token(jwt_secret, TENANT)
    runs: dict[str, WrkRun] = {}
    sizes: dict[str, int] = {}

    def minimal(label: str) -> None:
        port = free_loopback_port()
        log_path = workdir / f"{label}.log"
        process = start_process(
            [sys.executable, str(CHILD_SCRIPT), "--port", str(port)],
            env=dict(os.environ),
            cwd=workdir,
            log_path=log_path,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            wait_until_serving(url, process, log_path, path="/status")
            runs[label], sizes[label] = measure(
                label, f"{url}/status", token, process.pid, args, items=None
            )
        finally:
            stop_process(process)

    def mailsvc(label: str, **overrides: str) -> None:
        server: MailsvcServer = start_mailsvc(servers, jwt_secret, workdir, name=label, **overrides)
        try:
            runs[label], sizes[label] = measure(
                label, f"{server.url}{LIST_PATH}", token, server.process.pid, args, items=50
            )
        finally:
            stop_process(server.process)

    def profile(directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        output = directory / "api-list.txt"
        server = start_mailsvc(servers, jwt_secret, workdir, name="mailsvc-profiled")
        try:
            print(f"profiling mailsvc under the same load with py-spy into {output} ...")
            py_spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
            spy = start_process(
                [py_spy, "record", "--pid", str(server.process.pid), "--rate", "100",
                 "--duration", str(args.duration), "--format", "raw", "--output", str(output)],
                env=dict(os.environ), cwd=workdir, log_path=workdir / "py-spy.log",
            )  # fmt: skip
            run = run_wrk(
                f"{server.url}{LIST_PATH}", token, server.process.pid, args, seconds=args.duration
            )
            wait_process(spy, timeout=args.duration + 60)
            results.data["profiled_requests_per_second"] = run.requests_per_second
        finally:
            stop_process(server.process)

    minimal("minimal")
    mailsvc("mailsvc")
    minimal("minimal (again)")
    if not args.no_extras:
        mailsvc("mailsvc LOG_LEVEL=INFO", LOG_LEVEL="INFO")
        mailsvc(
            "mailsvc rate limiter off",
            RATE_LIMIT_REQUESTS_PER_MINUTE="0",
            RATE_LIMIT_REQUESTS_PER_HOUR="0",
        )
    if args.profile is not None:
        profile(args.profile)

    shape = f"{args.connections} connections, {args.threads} wrk threads, {args.duration} s"
    base = (runs["minimal"].requests_per_second + runs["minimal (again)"].requests_per_second) / 2
    listing = runs["mailsvc"]
    for label, run in runs.items():
        what = {
            "minimal": f"minimal endpoint GET /status ({sizes[label]} B)",
            "minimal (again)": "minimal endpoint, after mailsvc",
            "mailsvc": f"mailsvc GET {LIST_PATH} ({sizes[label]:,} B, {shape})",
        }.get(label, f"  diagnostic: {label}")
        results.add(what, run.describe())
    clean = all(r.non_2xx_3xx == 0 and not any(r.socket_errors.values()) for r in runs.values())
    ratio = listing.requests_per_second / base
    results.add(
        "mailsvc list req/s / minimal req/s (mean of both minimal runs)",
        f"{listing.requests_per_second:,.0f} / {base:,.0f} = {ratio:.1%}",
        f">= {RATIO_TARGET:.0%}",
        ratio >= RATIO_TARGET,
    )
    results.add(
        f"mailsvc list p99 at {args.connections} connections",
        f"{listing.p99_ms:.1f} ms",
        f"< {P99_TARGET_MS:.0f} ms",
        listing.p99_ms < P99_TARGET_MS,
    )
    results.add(
        "every response 200 (checked before/after each run; wrk non-2xx and socket errors)",
        "yes" if clean else "NO: see the runs above",
    )
    results.data.update(
        runs={label: asdict(run) for label, run in runs.items()},
        response_bytes=sizes,
        ratio=ratio,
        minimal_mean_rps=base,
        run_at=datetime.now(UTC).isoformat(timespec="seconds"),
    )
    return results


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
