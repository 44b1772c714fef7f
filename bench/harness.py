"""What every benchmark here shares: the results table, percentiles, child processes.

Each bench registers the processes it starts in `LIVE_CHILDREN`; `kill_children`
stops them (and their process groups) on every way out, Ctrl-C and kill included.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import resource
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mailsvc.logging import configure_logging

BENCH_DIR = Path(__file__).resolve().parent

# Children started by this process; killed (and reaped) on any exit path.
LIVE_CHILDREN: set[subprocess.Popen[bytes]] = set()


# -- results ----------------------------------------------------------------------------


@dataclass
class Row:
    """One line of the final table."""

    what: str
    value: str
    target: str = ""
    met: bool | None = None


@dataclass
class Results:
    rows: list[Row] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)

    def add(self, what: str, value: str, target: str = "", met: bool | None = None) -> None:
        self.rows.append(Row(what, value, target, met))
        print(f"  {what}: {value}" + (f"  [target {target}: {verdict(met)}]" if target else ""))

    def print_table(self) -> None:
        width = max(len(row.what) for row in self.rows)
        print()
        print(f"{'what':<{width}}  result")
        print("-" * (width + 90))
        for row in self.rows:
            line = f"{row.what:<{width}}  {row.value}"
            if row.target:
                line += f"  => target {row.target}: {verdict(row.met)}"
            print(line)
        print()
        print(f"command: {self.data['command']}")

    def write_json(self, path: Path | None) -> None:
        if path is not None:
            self.data["rows"] = [row.__dict__ for row in self.rows]
            path.write_text(json.dumps(self.data, indent=2, default=str, ensure_ascii=False))


def verdict(met: bool | None) -> str:
    return {True: "met", False: "MISSED", None: ""}[met]


def percentile(values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile: p95 of 600 samples is the 570th smallest."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


def describe_ms(seconds: Sequence[float]) -> str:
    """`p50 / p95 / p99 / max` of `seconds`, in milliseconds."""
    return (
        f"p50 {percentile(seconds, 0.5) * 1000:.1f} ms, p95 {percentile(seconds, 0.95) * 1000:.1f}"
        f" ms, p99 {percentile(seconds, 0.99) * 1000:.1f} ms, max {max(seconds) * 1000:.1f} ms"
    )


def summary_ms(seconds: Sequence[float]) -> dict[str, float]:
    return {
        "p50_ms": percentile(seconds, 0.5) * 1000,
        "p95_ms": percentile(seconds, 0.95) * 1000,
        "p99_ms": percentile(seconds, 0.99) * 1000,
        "max_ms": max(seconds) * 1000,
        "mean_ms": statistics.fmean(seconds) * 1000,
        "samples": len(seconds),
    }


# -- process hygiene --------------------------------------------------------------------


def interrupt(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def kill_children() -> None:
    for child in list(LIVE_CHILDREN):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(child.pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError, subprocess.TimeoutExpired):
            child.wait(timeout=10)
        LIVE_CHILDREN.discard(child)


def quietly(function: Callable[[], object]) -> Callable[[], None]:
    """A clean-up step that must not stop the ones after it."""

    def call() -> None:
        try:
            function()
        except Exception as exc:
            print(f"clean-up step failed: {exc!r}", file=sys.stderr)

    return call


def machine_basics() -> dict[str, Any]:
    """Code revision, CPU, memory, kernel and Python of this machine."""
    memory_kib = 0
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory_kib = int(line.split()[1])
    cpu = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    revision = subprocess.run(
        ["git", "-C", str(BENCH_DIR), "describe", "--always", "--dirty"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    return {
        "code": revision or "unknown",
        "nproc": os.cpu_count(),
        "memory_gib": round(memory_kib / 1024 / 1024, 1),
        "cpu": cpu,
        "kernel": platform.release(),
        "python": platform.python_version(),
    }


def run_main(
    description: str,
    add_arguments: Callable[[argparse.ArgumentParser], None],
    run: Callable[[argparse.Namespace, contextlib.ExitStack], Results],
    *,
    finish: Callable[[Results], None] | None = None,
) -> None:
    """Parse arguments, run, and stop everything started, also on Ctrl-C or kill.

    `finish` sees the results once everything is stopped, before they are printed.
    """
    parser = argparse.ArgumentParser(description=description)
    add_arguments(parser)
    args = parser.parse_args()
    configure_logging("WARNING")
    # Ctrl-C, kill and a closed terminal all stop the run at once, wherever it is (also
    # inside asyncio.run), and the ExitStack then stops everything that was started.
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, interrupt)
    started = time.perf_counter()
    with contextlib.ExitStack() as stack:
        # Registered first, so it runs last: children die before their servers go.
        stack.callback(kill_children)
        try:
            results = run(args, stack)
        except KeyboardInterrupt as stopped:
            print(f"interrupted ({stopped}); stopping everything started ...", file=sys.stderr)
            kill_children()
            stack.close()
            sys.exit(130)
        finally:
            kill_children()
            print("cleaning up ...", file=sys.stderr)
    if finish is not None:
        finish(results)
    results.print_table()
    results.write_json(args.json)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    elapsed = time.perf_counter() - started
    print(f"bench took {elapsed:.0f} s (bench process peak RSS {peak_mb:.0f} MB)")
