"""Open-loop HTTP load generator: requests at a fixed offered rate, latency from schedule.

A closed-loop tool such as wrk sends the next request on a connection only when the
previous answer came back: when the server stalls, the tool stalls with it and the
requests it would have sent meanwhile are never timed ("coordinated omission"), so
the latency it reports hides the queueing. This one is open-loop:

- request i is scheduled at `start + i / rate` (or, with `--poisson`, at the sum of
  i exponential gaps of mean 1 / rate), whatever happened to the ones before it;
- its latency runs from that SCHEDULED time to the end of its response, so time spent
  waiting for a free connection or behind a slow answer counts;
- requests go over a pool of keep-alive HTTP/1.1 connections (raw asyncio streams, no
  client library: httpx costs more CPU per request than the servers measured here);
  when every connection is busy a new one is opened, up to `--max-connections`;
  past that, requests wait in order for the next free one (still timed from their
  schedule);
- the first `--warmup` seconds are sent on the same schedule but not recorded.

The generator's own lateness counts in the latency too. Its scheduler sleeps at least
1 ms at a time (uvloop's timers have millisecond resolution; shorter sleeps would spin
a core the server needs), so requests leave up to ~1-2 ms after their time, and every
latency includes that: a p50 of ~1.5 ms against an endpoint that answers in 0.1 ms.
`dispatch_lag` reports it separately, with the generator's CPU per request, so a run
shows whether the generator kept up. Its ceiling, measured on the 2-vCPU VM against
the minimal FastAPI endpoint of bench/api_child.py (wrk: ~10,800 req/s), the two
sharing both cores, `--priority -5`, 8 s per rate: offered 2,000 / 4,000 / 6,000 /
7,000 req/s all achieved, dispatch lag p99 1.5-2.1 ms, latency p99 2.3-7.2 ms, 75-35
us of CPU per request (less at higher rates: one wake-up sends several); at 8,000 req/s
the endpoint itself saturated (p99 106 ms, 256 connections) while the lag stayed at
2.0 ms. So it holds at least 7,000 req/s here, well above the rates bench/api.py
offers mailsvc (half of each route's maximum: ~200-1,000 req/s), and bench/api.py
checks it in every run (its "open-loop generator" lines).

Output: one JSON object on stdout (see `Report`); a one-line summary on stderr.

Run: `python bench/openloop.py http://127.0.0.1:8000 --rate 1000 --duration 10
[--warmup 2] [--path /status | --paths-file FILE (one path per line, used in turn)]
[--header "Authorization: Bearer ..."] [--poisson] [--seed 1] [--max-connections 256]
[--timeout 30] [--priority -5]`. To see its ceiling against the minimal endpoint:
`python bench/api_child.py --port 8000 &` then raise `--rate` until `dispatch_lag`
or the achieved rate give way.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import random
import resource
import sys
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any
from urllib.parse import urlsplit

# Responses larger than this are refused (a bug in the server or in this parser).
MAX_BODY_BYTES = 64 * 2**20
# The scheduler's shortest sleep (see `run`).
MIN_SLEEP_SECONDS = 0.001
PERCENTILES = (("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("p99.9", 0.999))


# -- pure parts (tests/test_bench_openloop.py) ------------------------------------------


def schedule(rate: float, count: int, *, poisson: bool = False, seed: int = 1) -> Iterator[float]:
    """Send offsets in seconds from the start of the run, one per request.

    Constant rate: request i at i / rate exactly (computed from i, so no rounding
    error accumulates). Poisson: exponential gaps of mean 1 / rate from a seeded
    generator, so two runs with the same seed send at the same moments.
    """
    if rate <= 0:
        raise ValueError("rate must be positive")
    if not poisson:
        for index in range(count):
            yield index / rate
        return
    rng = random.Random(seed)
    offset = 0.0
    for _ in range(count):
        yield offset
        offset += rng.expovariate(rate)


def percentile(ordered: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile of an ascending sequence: p99 of 1,000 samples is the
    990th smallest, p99.9 the 999th (always a measured value, never interpolated)."""
    if not ordered:
        return math.nan
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


def latency_summary(seconds: Sequence[float]) -> dict[str, float]:
    """p50/p90/p99/p99.9/max/mean of `seconds`, in milliseconds."""
    ordered = sorted(seconds)
    summary = {name: percentile(ordered, fraction) * 1000 for name, fraction in PERCENTILES}
    summary["max"] = ordered[-1] * 1000 if ordered else math.nan
    summary["mean"] = sum(ordered) / len(ordered) * 1000 if ordered else math.nan
    return summary


# -- HTTP/1.1 over asyncio streams ------------------------------------------------------


class ProtocolError(Exception):
    """The server's response could not be read as HTTP/1.1."""


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bool]:
    """Read one whole response; its status and whether the connection stays open."""
    head = await reader.readuntil(b"\r\n\r\n")
    try:
        status = int(head[9:12])
    except ValueError as exc:
        raise ProtocolError(f"bad status line {head[:40]!r}") from exc
    length = -1
    chunked = False
    keep_alive = head.startswith(b"HTTP/1.1")
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"transfer-encoding":
            chunked = b"chunked" in value.lower()
        elif name == b"connection":
            keep_alive = value.strip().lower() != b"close"
    if chunked:
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            await reader.readexactly(size + 2)  # the chunk and its CRLF
            if size == 0:
                break
    elif length > MAX_BODY_BYTES:
        raise ProtocolError(f"response body of {length} bytes")
    elif length >= 0:
        await reader.readexactly(length)
    elif status not in (204, 304) and not 100 <= status < 200:
        # No length: the body runs to the end of the connection.
        await reader.read()
        keep_alive = False
    return status, keep_alive


def request_bytes(host: str, path: str, headers: Sequence[str]) -> bytes:
    """A GET for `path` with the Host header and `headers` ("Name: value")."""
    lines = [f"GET {path} HTTP/1.1", f"Host: {host}", *headers, "", ""]
    return "\r\n".join(lines).encode("latin-1")


# -- the run ----------------------------------------------------------------------------


@dataclass
class Plan:
    host: str
    port: int
    requests: list[bytes]
    """One request per path, used in turn (request i sends requests[i % len])."""
    rate: float
    duration: float
    warmup: float
    poisson: bool
    seed: int
    max_connections: int
    timeout: float


@dataclass
class Report:
    """What one run did; latencies in milliseconds, from each request's schedule."""

    offered_rate: float
    duration_s: float
    warmup_s: float
    poisson: bool
    scheduled: int
    """Requests scheduled in the measured window (after the warm-up)."""
    completed: int
    """Of those, answered (any status) before the end of the run."""
    achieved_rate: float
    """Responses (any request's) received within the measured window, per second."""
    statuses: dict[str, int]
    non_2xx: int
    errors: dict[str, int]
    """Connection and protocol errors, and requests unanswered `--timeout` after the
    last one was scheduled ("unanswered"), by kind."""
    latency_ms: dict[str, float]
    dispatch_lag_ms: dict[str, float]
    """How late the generator itself handed each request to a connection."""
    max_by_second_ms: list[float]
    """The slowest request scheduled in each second of the measured window: shows
    whether slow answers cluster (a stall every few seconds) or spread."""
    connections_opened: int
    max_in_flight: int
    generator_cpu_seconds: float
    generator_cpu_us_per_request: float
    paths: int

    def describe(self) -> str:
        lat = self.latency_ms
        errors = sum(self.errors.values())
        return (
            f"offered {self.offered_rate:,.0f}/s, achieved {self.achieved_rate:,.0f}/s; "
            f"p50 {lat['p50']:.1f} ms, p99 {lat['p99']:.1f} ms, p99.9 {lat['p99.9']:.1f} ms, "
            f"max {lat['max']:.1f} ms ({self.completed:,} of {self.scheduled:,} answered; "
            f"non-2xx {self.non_2xx}, errors {errors}; {self.connections_opened} connections; "
            f"generator lag p99 {self.dispatch_lag_ms['p99']:.2f} ms, "
            f"{self.generator_cpu_us_per_request:.0f} us CPU/request)"
        )


@dataclass
class _State:
    plan: Plan
    start: float = 0.0
    window_start: float = 0.0
    window_end: float = 0.0
    warmup_count: int = 0
    queue: asyncio.Queue[tuple[int, float]] = field(default_factory=asyncio.Queue)
    idle: int = 0
    connections: int = 0
    connections_opened: int = 0
    in_flight: int = 0
    max_in_flight: int = 0
    outstanding: int = 0
    all_sent: bool = False
    latencies: list[float] = field(default_factory=list)
    worst: dict[int, float] = field(default_factory=dict)
    lags: list[float] = field(default_factory=list)
    statuses: Counter[int] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    in_window: int = 0
    done: asyncio.Event = field(default_factory=asyncio.Event)
    workers: set[asyncio.Task[None]] = field(default_factory=set)


async def _connection(state: _State) -> None:
    """One keep-alive connection: takes queued requests until the run ends.

    After an error the failed request is counted (not retried) and a new connection
    opened; but a reused connection that the server had closed while it was idle
    (uvicorn closes keep-alive connections after 5 s) is not an error of the request:
    it is sent again on a new connection, as any HTTP client does.
    """
    plan = state.plan
    requests = plan.requests
    clock = time.perf_counter
    retry: tuple[int, float] | None = None
    while True:
        try:
            reader, writer = await asyncio.open_connection(plan.host, plan.port)
        except OSError as exc:
            state.errors[f"connect: {type(exc).__name__}"] += 1
            await asyncio.sleep(0.05)
            continue
        state.connections_opened += 1
        served = 0
        try:
            while True:
                if retry is not None:
                    (index, scheduled), retry = retry, None
                else:
                    state.idle += 1
                    index, scheduled = await state.queue.get()
                    state.idle -= 1
                    state.in_flight += 1
                    state.max_in_flight = max(state.max_in_flight, state.in_flight)
                    if reader.at_eof():
                        retry = (index, scheduled)
                        break
                try:
                    writer.write(requests[index % len(requests)])
                    status, keep_alive = await read_response(reader)
                except asyncio.IncompleteReadError as exc:
                    if served and not exc.partial:
                        retry = (index, scheduled)
                    else:
                        _finish(state, index, scheduled, clock(), None, "IncompleteReadError")
                    break
                except (OSError, asyncio.LimitOverrunError, ProtocolError, ValueError) as exc:
                    _finish(state, index, scheduled, clock(), None, type(exc).__name__)
                    break
                served += 1
                _finish(state, index, scheduled, clock(), status, None)
                if not keep_alive:
                    break
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()


def _finish(
    state: _State, index: int, scheduled: float, now: float, status: int | None, error: str | None
) -> None:
    state.in_flight -= 1
    state.outstanding -= 1
    if state.window_start <= now < state.window_end:
        state.in_window += 1
    if index >= state.warmup_count:
        if status is None:
            state.errors[error or "error"] += 1
        else:
            state.statuses[status] += 1
            latency = now - scheduled
            state.latencies.append(latency)
            second = int(scheduled - state.window_start)
            state.worst[second] = max(latency, state.worst.get(second, 0.0))
    if state.outstanding == 0 and state.all_sent:
        state.done.set()


def _dispatch(state: _State, index: int, scheduled: float, now: float) -> None:
    state.outstanding += 1
    state.queue.put_nowait((index, scheduled))
    if index >= state.warmup_count:
        state.lags.append(now - scheduled)
    # Idle connections not yet claimed by a queued request: when none is left, open
    # one more (it takes the next queued request once connected).
    if state.idle - state.queue.qsize() < 0 and state.connections < state.plan.max_connections:
        state.connections += 1
        task = asyncio.get_running_loop().create_task(_connection(state))
        state.workers.add(task)


async def run(plan: Plan) -> Report:
    """Send the plan's requests on schedule and report what came back."""
    state = _State(plan)
    clock = time.perf_counter
    warmup_count = math.ceil(plan.rate * plan.warmup)
    total = warmup_count + math.ceil(plan.rate * plan.duration)
    offsets = list(schedule(plan.rate, total, poisson=plan.poisson, seed=plan.seed))
    state.warmup_count = warmup_count
    cpu_before = _cpu_seconds()
    # A few connections before the clock starts (more open on demand).
    for _ in range(min(4, plan.max_connections)):
        state.connections += 1
        state.workers.add(asyncio.get_running_loop().create_task(_connection(state)))
    await asyncio.sleep(0.05)
    state.start = clock() + 0.01
    measured_from = offsets[warmup_count] if warmup_count < total else 0.0
    state.window_start = state.start + measured_from
    state.window_end = state.window_start + plan.duration
    index = 0
    while index < total:
        due = state.start + offsets[index]
        now = clock()
        if due > now:
            # Never less than a millisecond: uvloop's timers have millisecond
            # resolution, so a shorter sleep returns at once and the loop would spin
            # a core (which the servers measured need). A request can so leave up to
            # ~1 ms late; that lateness is in its latency and in `dispatch_lag`.
            await asyncio.sleep(max(due - now, MIN_SLEEP_SECONDS))
            now = clock()
        # Everything due by now goes out, however late the loop woke.
        while index < total and state.start + offsets[index] <= now:
            _dispatch(state, index, state.start + offsets[index], now)
            index += 1
    state.all_sent = True
    if state.outstanding:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(state.done.wait(), plan.timeout)
    cpu = _cpu_seconds() - cpu_before
    for task in state.workers:
        task.cancel()
    await asyncio.gather(*state.workers, return_exceptions=True)
    measured = total - warmup_count
    unanswered = max(0, state.outstanding)
    if unanswered:
        # Whatever is still outstanding is mostly measured requests (the warm-up ended
        # long before): count them all as such.
        state.errors["unanswered"] += min(unanswered, measured)
    statuses = {str(code): count for code, count in sorted(state.statuses.items())}
    return Report(
        offered_rate=plan.rate,
        duration_s=plan.duration,
        warmup_s=plan.warmup,
        poisson=plan.poisson,
        scheduled=measured,
        completed=len(state.latencies),
        achieved_rate=state.in_window / plan.duration,
        statuses=statuses,
        non_2xx=sum(n for code, n in state.statuses.items() if not 200 <= code < 300),
        errors=dict(state.errors),
        latency_ms=latency_summary(state.latencies),
        dispatch_lag_ms=latency_summary(state.lags),
        max_by_second_ms=[
            round(state.worst.get(second, math.nan) * 1000, 1)
            for second in range(math.ceil(plan.duration))
        ],
        connections_opened=state.connections_opened,
        max_in_flight=state.max_in_flight,
        generator_cpu_seconds=cpu,
        generator_cpu_us_per_request=cpu / total * 1e6 if total else 0.0,
        paths=len(plan.requests),
    )


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def parse_args(argv: Sequence[str] | None = None) -> tuple[Plan, argparse.Namespace]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("url", help="http://host:port (paths come from --path / --paths-file)")
    parser.add_argument("--rate", type=float, required=True, help="requests per second")
    parser.add_argument("--duration", type=float, default=10.0, help="measured seconds")
    parser.add_argument("--warmup", type=float, default=2.0, help="unrecorded seconds first")
    parser.add_argument("--path", action="append", default=[], help="a path (repeatable)")
    parser.add_argument("--paths-file", help="one path per line, sent in turn")
    parser.add_argument("--header", action="append", default=[], help='"Name: value"')
    parser.add_argument("--poisson", action="store_true", help="exponential gaps, not fixed")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--max-connections", type=int, default=256)
    parser.add_argument(
        "--timeout", type=float, default=30.0, help="wait this long for the last answers"
    )
    parser.add_argument(
        "--priority",
        type=int,
        help="nice value to run at (negative needs root): keeps other work on a shared "
        "machine from delaying the schedule",
    )
    args = parser.parse_args(argv)
    target = urlsplit(args.url)
    if target.scheme != "http" or not target.hostname:
        parser.error("url must be http://host[:port]")
    paths = list(args.path)
    if args.paths_file:
        with open(args.paths_file, encoding="utf-8") as file:
            paths += [line.strip() for line in file if line.strip()]
    if not paths:
        paths = [target.path or "/"]
    host_header = target.netloc
    port = target.port or 80
    plan = Plan(
        host=target.hostname,
        port=port,
        requests=[request_bytes(host_header, path, args.header) for path in paths],
        rate=args.rate,
        duration=args.duration,
        warmup=args.warmup,
        poisson=args.poisson,
        seed=args.seed,
        max_connections=args.max_connections,
        timeout=args.timeout,
    )
    return plan, args


def main(argv: Sequence[str] | None = None) -> None:
    plan, args = parse_args(argv)
    priority = os.getpriority(os.PRIO_PROCESS, 0)
    if args.priority is not None and args.priority != priority:
        try:
            os.setpriority(os.PRIO_PROCESS, 0, args.priority)
            priority = args.priority
        except OSError as exc:
            print(f"running at nice {priority}, not {args.priority}: {exc}", file=sys.stderr)
    try:
        import uvloop
    except ImportError:
        report = asyncio.run(run(plan))
    else:
        report = uvloop.run(run(plan))
    print(report.describe(), file=sys.stderr)
    data: dict[str, Any] = asdict(report)
    data["event_loop"] = "uvloop" if "uvloop" in sys.modules else "asyncio"
    data["nice"] = priority
    print(json.dumps(data))


if __name__ == "__main__":
    main()
