"""bench/openloop.py: its schedule, percentiles, response reader, and that latency runs
from the schedule (a slow server's queue shows in it)."""

from __future__ import annotations

import asyncio
import importlib.util
import itertools
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from types import ModuleType

import pytest

_PATH = Path(__file__).resolve().parents[1] / "bench" / "openloop.py"


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_openloop", _PATH)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    # dataclasses look their module up in sys.modules.
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


openloop = _load()


def test_constant_schedule_is_exact() -> None:
    offsets = list(openloop.schedule(400.0, 1001))
    assert len(offsets) == 1001
    assert offsets[0] == 0.0
    assert offsets[400] == 1.0
    assert offsets[1000] == 2.5


def test_poisson_schedule_is_seeded_with_the_offered_mean_gap() -> None:
    offsets = list(openloop.schedule(1000.0, 20_001, poisson=True, seed=7))
    assert offsets == list(openloop.schedule(1000.0, 20_001, poisson=True, seed=7))
    assert offsets != list(openloop.schedule(1000.0, 20_001, poisson=True, seed=8))
    gaps = [b - a for a, b in itertools.pairwise(offsets)]
    assert min(gaps) >= 0
    assert len(set(gaps)) > 19_000  # not a fixed interval
    assert offsets[-1] / 20_000 == pytest.approx(0.001, rel=0.03)


def test_schedule_refuses_a_rate_of_zero() -> None:
    with pytest.raises(ValueError, match="rate"):
        list(openloop.schedule(0.0, 10))


def test_percentiles_are_nearest_rank() -> None:
    values = [float(v) for v in range(1000, 0, -1)]
    summary = openloop.latency_summary([v / 1000 for v in values])
    assert summary["p50"] == pytest.approx(500.0)
    assert summary["p99"] == pytest.approx(990.0)
    assert summary["p99.9"] == pytest.approx(999.0)
    assert summary["max"] == pytest.approx(1000.0)
    assert openloop.percentile([3.0], 0.999) == 3.0


async def _read(data: bytes) -> tuple[tuple[int, bool], bytes]:
    reader = asyncio.StreamReader()
    reader.feed_data(data)
    reader.feed_eof()
    answer = await openloop.read_response(reader)
    return answer, await reader.read()


async def test_response_reader_reads_exactly_one_response() -> None:
    sized = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhelloNEXT"
    assert await _read(sized) == ((200, True), b"NEXT")
    chunked = (
        b"HTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\nNEXT"
    )
    assert await _read(chunked) == ((404, True), b"NEXT")
    closing = b"HTTP/1.1 503 Busy\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
    assert await _read(closing) == ((503, False), b"")
    unsized = b"HTTP/1.0 200 OK\r\n\r\nto the end"
    assert await _read(unsized) == ((200, False), b"")


@pytest.fixture
async def slow_server() -> AsyncIterator[int]:
    """A keep-alive HTTP server that takes 20 ms per request."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                await reader.readuntil(b"\r\n\r\n")
                await asyncio.sleep(0.02)
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    yield server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()


async def test_latency_runs_from_the_schedule_not_from_the_send(slow_server: int) -> None:
    # 20 requests due within 0.2 s, one connection, 20 ms each: the last can only
    # finish >= 0.4 s after the start, 0.21 s after its scheduled time. A closed-loop
    # tool would time it from its send: 20 ms.
    plan = openloop.Plan(
        host="127.0.0.1",
        port=slow_server,
        requests=[openloop.request_bytes("127.0.0.1", "/", [])],
        rate=100.0,
        duration=0.2,
        warmup=0.0,
        poisson=False,
        seed=1,
        max_connections=1,
        timeout=10.0,
    )
    report = await openloop.run(plan)
    assert report.scheduled == 20
    assert report.completed == 20
    assert report.statuses == {"200": 20}
    assert report.errors == {}
    assert report.connections_opened == 1
    assert report.latency_ms["max"] >= 210.0
    assert report.latency_ms["p50"] >= 100.0
