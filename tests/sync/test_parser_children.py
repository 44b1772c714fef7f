"""The parser pool's processes die with the process that owns them, even a SIGKILLed one
(a worker or api process killed by an operator, the OOM killer or a test)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

# A process that owns a ParserPool the way runtime.py does, with the pool's workers
# started by one real parse; it says "ready" and then waits to be killed.
OWNER = """
import asyncio, sys
from mailsvc.sync.parser import ParserPool

async def main() -> None:
    pool = ParserPool(processes=2)
    parsed = await pool.parse([b"Subject: hi\\r\\n\\r\\nbody\\r\\n"] * 2)
    assert parsed[0].subject == "hi", parsed
    print("ready", flush=True)
    sys.stdin.read()

asyncio.run(main())
"""


def _stat_fields(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: split after it.
    return raw[raw.rindex(")") + 2 :].split()


def _children(pid: int) -> dict[int, str]:
    """Child pid -> start time (clock ticks since boot), from /proc."""
    found: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            fields = _stat_fields(int(entry.name))
            # fields[1] is the parent pid, fields[19] the start time (proc(5)).
            if fields is not None and fields[1] == str(pid):
                found[int(entry.name)] = fields[19]
    return found


def _alive(pid: int, started: str) -> bool:
    fields = _stat_fields(pid)
    # Gone, a zombie waiting for its reaper, or the pid reused by another process.
    return fields is not None and fields[0] != "Z" and fields[19] == started


@pytest.fixture
def owner() -> Iterator[subprocess.Popen[str]]:
    with subprocess.Popen(
        [sys.executable, "-c", OWNER],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    ) as process:
        yield process
        if process.poll() is None:
            process.kill()


@pytest.mark.skipif(sys.platform != "linux", reason="parent-death signals are Linux-only")
def test_pool_processes_die_with_a_sigkilled_owner(owner: subprocess.Popen[str]) -> None:
    assert owner.stdout is not None
    assert owner.stdout.readline() == "ready\n"
    children = _children(owner.pid)
    # Two parser processes and multiprocessing's resource tracker.
    assert len(children) >= 2, children

    owner.send_signal(signal.SIGKILL)
    owner.wait()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        survivors = {pid for pid, started in children.items() if _alive(pid, started)}
        if not survivors:
            break
        time.sleep(0.05)
    try:
        assert not survivors, f"outlived their owner: {survivors}"
    finally:
        for pid in survivors:
            os.kill(pid, signal.SIGKILL)
