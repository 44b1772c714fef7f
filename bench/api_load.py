"""The load of bench/api.py: wrk at saturation, bench/openloop.py at a fixed rate, and
what the server's process group (uvicorn and its workers) used meanwhile.

A `Route` is what one measurement requests: one path, or several sent in turn (a
generated wrk Lua script for wrk, a paths file for the open-loop generator).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

BENCH_DIR = Path(__file__).resolve().parent
OPENLOOP_SCRIPT = BENCH_DIR / "openloop.py"
WRK = shutil.which("wrk") or "/usr/bin/wrk"
OPENLOOP_WARM_UP_SECONDS = 2
OPENLOOP_MAX_CONNECTIONS = 256
# The generator runs ahead of other work on the machine (when allowed: root): its
# lateness would count as the server's latency. It needs little CPU (~0.1 core).
OPENLOOP_NICE = -5

_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3, "h": 3600e3}


# -- wrk (closed loop, saturation) ------------------------------------------------------


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
    cpu: dict[str, float]
    """CPU-seconds per second by role (`cpu_per_second`)."""
    output: str

    @property
    def clean(self) -> bool:
        return self.non_2xx_3xx == 0 and not any(self.socket_errors.values())

    def describe(self) -> str:
        errors = sum(self.socket_errors.values())
        return (
            f"{self.requests_per_second:,.0f} req/s, p50 {self.p50_ms:.1f} ms, p99 "
            f"{self.p99_ms:.1f} ms, max {self.latency_max_ms:.0f} ms ({self.requests:,} "
            f"requests; non-2xx/3xx {self.non_2xx_3xx}, socket errors {errors}; "
            f"{describe_cpu(self.cpu)})"
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


# -- where the CPU went ------------------------------------------------------------------


@dataclass(frozen=True)
class Watched:
    """The processes whose CPU each run reports: the server's process group (uvicorn
    and its workers), the embedded PostgreSQL and Redis with their children when the
    bench started them (None: servers of DATABASE_URL / REDIS_URL), and the private
    Dovecot's process group in the IDLE step."""

    server_group: int
    postgres: int | None = None
    redis: int | None = None
    dovecot_group: int | None = None


def _processes() -> dict[int, tuple[int, int, float]]:
    """pid -> (parent pid, process group, CPU seconds with its reaped children's)."""
    tick = os.sysconf("SC_CLK_TCK")
    table = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = (entry / "stat").read_text().rpartition(")")[2].split()
            cpu = sum(int(value) for value in fields[11:15]) / tick
            table[int(entry.name)] = (int(fields[1]), int(fields[2]), cpu)
    return table


def _tree_cpu(table: dict[int, tuple[int, int, float]], root: int) -> float:
    """CPU of `root` and of every live descendant (PostgreSQL's backends)."""
    children: dict[int, list[int]] = {}
    for pid, (parent, _, _) in table.items():
        children.setdefault(parent, []).append(pid)
    total, pending = 0.0, [root]
    while pending:
        pid = pending.pop()
        if pid in table:
            total += table[pid][2]
        pending += children.get(pid, [])
    return total


def cpu_snapshot(watched: Watched) -> dict[str, float]:
    """Cumulative CPU seconds per role, and the machine's busy, idle and stolen time.

    "generator" is what this process's finished children used: wrk or openloop.py,
    each run to its end within the interval measured.
    """
    table = _processes()
    snapshot = {
        "server": sum(cpu for _, group, cpu in table.values() if group == watched.server_group)
    }
    for role, root in (("postgres", watched.postgres), ("redis", watched.redis)):
        if root is not None:
            snapshot[role] = _tree_cpu(table, root)
    if watched.dovecot_group is not None:
        snapshot["dovecot"] = sum(
            cpu for _, group, cpu in table.values() if group == watched.dovecot_group
        )
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    snapshot["generator"] = usage.ru_utime + usage.ru_stime
    # user nice system idle iowait irq softirq steal
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:9]]
    tick = os.sysconf("SC_CLK_TCK")
    snapshot["machine idle"] = (values[3] + values[4]) / tick
    snapshot["machine stolen"] = values[7] / tick
    snapshot["machine busy"] = (sum(values) - values[3] - values[4] - values[7]) / tick
    return snapshot


def cpu_per_second(
    before: dict[str, float], after: dict[str, float], seconds: float
) -> dict[str, float]:
    """CPU-seconds per second of each role between two snapshots; "other" is the busy
    time none of them used (other work on the machine, the kernel)."""
    rates = {role: (after[role] - before[role]) / seconds for role in after}
    known = sum(rates[r] for r in rates if not r.startswith("machine"))
    rates["other"] = max(0.0, rates["machine busy"] - known)
    return rates


def describe_cpu(rates: dict[str, float]) -> str:
    names = ("server", "generator", "postgres", "redis", "dovecot", "other")
    roles = [role for role in names if role in rates]
    shares = ", ".join(f"{role} {rates[role]:.2f}" for role in roles)
    return (
        f"CPU-s/s: {shares}, idle {rates['machine idle']:.2f}, stolen {rates['machine stolen']:.2f}"
    )


def group_rss_mib(group: int) -> float:
    """VmRSS of every process of process group `group`, MiB."""
    kib = 0
    for pid, (_, pgrp, _) in _processes().items():
        if pgrp != group:
            continue
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    kib += int(line.split()[1])
    return kib / 1024


def find_watched(server_group: int, workdir: Path, redis_url: str) -> Watched:
    """`Watched` with the embedded PostgreSQL (its postmaster.pid in `workdir`) and the
    embedded Redis (redis-server retitles itself "/path/redis-server HOST:PORT")."""
    postgres = None
    for pid_file in workdir.rglob("postmaster.pid"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            postgres = int(pid_file.read_text().splitlines()[0])
    redis = None
    location = urlsplit(redis_url)
    title = f"redis-server {location.hostname}:{location.port}".encode()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if (entry / "cmdline").read_bytes().split(b"\0")[0].endswith(title):
                    redis = int(entry.name)
    return Watched(server_group, postgres, redis)


def process_group_of(marker: str) -> int | None:
    """The process group of the first process whose command line holds `marker`."""
    needle = marker.encode()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, ValueError, IndexError):
                if needle in (entry / "cmdline").read_bytes():
                    return int((entry / "stat").read_text().rpartition(")")[2].split()[2])
    return None


_WRK_SCRIPT = """\
-- Written by bench/api.py: each wrk thread sends these paths in turn, from its own offset.
local paths = {
%s
}
local counter = 0
local threads = 0

function setup(thread)
  thread:set("offset", threads * %d)
  threads = threads + 1
end

function init(args)
  counter = offset or 0
end

function request()
  counter = counter + 1
  return wrk.format(nil, paths[(counter %% #paths) + 1])
end
"""


@dataclass
class Route:
    """What one measurement requests: a name (list, get, search, ...) and its paths."""

    name: str
    paths: list[str]
    items: int | None = None
    """Items each response must hold (the list), checked before and after."""
    script: Path | None = None
    paths_file: Path | None = None

    def write_files(self, workdir: Path) -> None:
        """The wrk Lua script (several paths only) and openloop's paths file."""
        self.paths_file = workdir / f"paths-{self.name}.txt"
        self.paths_file.write_text("".join(f"{path}\n" for path in self.paths))
        if len(self.paths) > 1:
            # Paths are URL-encoded ASCII: no quote or backslash to escape.
            listed = ",\n".join(f'  "{path}"' for path in self.paths)
            self.script = workdir / f"wrk-{self.name}.lua"
            offset = max(1, len(self.paths) // 2)
            self.script.write_text(_WRK_SCRIPT % (listed, offset))


def run_wrk(
    base_url: str,
    route: Route,
    token: str,
    watched: Watched,
    args: argparse.Namespace,
    *,
    seconds: int,
) -> WrkRun:
    command = [
        WRK, f"-t{args.threads}", f"-c{args.connections}", f"-d{seconds}s", "--latency",
        "--timeout", "30s", "-H", f"Authorization: Bearer {token}",
    ]  # fmt: skip
    if route.script is not None:
        command += ["-s", str(route.script), base_url]
    else:
        command.append(base_url + route.paths[0])
    before = cpu_snapshot(watched)
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    cpu = cpu_per_second(before, cpu_snapshot(watched), time.perf_counter() - started)
    if done.returncode != 0:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stderr}\n{done.stdout}")
    return WrkRun(**parse_wrk(done.stdout), cpu=cpu, output=done.stdout)


# -- the open-loop generator (fixed rate) -----------------------------------------------


@dataclass
class OpenLoopRun:
    """bench/openloop.py's report, and where the CPU went meanwhile."""

    report: dict[str, Any]
    cpu: dict[str, float]

    @property
    def p99_ms(self) -> float:
        return float(self.report["latency_ms"]["p99"])

    @property
    def clean(self) -> bool:
        return self.report["non_2xx"] == 0 and not self.report["errors"]

    def describe(self) -> str:
        r = self.report
        lat = r["latency_ms"]
        return (
            f"offered {r['offered_rate']:,.0f}/s, achieved {r['achieved_rate']:,.0f}/s: "
            f"p50 {lat['p50']:.1f} ms, p99 {lat['p99']:.1f} ms, p99.9 {lat['p99.9']:.1f} ms, "
            f"max {lat['max']:.1f} ms ({r['completed']:,} of {r['scheduled']:,} answered; "
            f"non-2xx {r['non_2xx']}, errors {sum(r['errors'].values())}; "
            f"{r['connections_opened']} connections; generator lag p99 "
            f"{r['dispatch_lag_ms']['p99']:.1f} ms, {r['generator_cpu_us_per_request']:.0f} us "
            f"CPU/request; {describe_cpu(self.cpu)})"
        )


def run_openloop(
    base_url: str,
    route: Route,
    token: str,
    watched: Watched,
    args: argparse.Namespace,
    *,
    rate: float,
) -> OpenLoopRun:
    assert route.paths_file is not None
    command = [
        sys.executable, str(OPENLOOP_SCRIPT), base_url, "--rate", f"{rate:.1f}",
        "--duration", str(args.duration), "--warmup", str(OPENLOOP_WARM_UP_SECONDS),
        "--paths-file", str(route.paths_file), "--header", f"Authorization: Bearer {token}",
        "--max-connections", str(OPENLOOP_MAX_CONNECTIONS),
        "--priority", str(OPENLOOP_NICE),
    ]  # fmt: skip
    before = cpu_snapshot(watched)
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    cpu = cpu_per_second(before, cpu_snapshot(watched), time.perf_counter() - started)
    if done.returncode != 0:
        raise RuntimeError(f"openloop failed ({done.returncode}): {done.stderr}")
    return OpenLoopRun(json.loads(done.stdout), cpu)
