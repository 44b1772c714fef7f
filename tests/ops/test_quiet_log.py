"""A quiet service has a quiet log: arq's per-job and per-cron lines are DEBUG, its
warnings and errors keep their level."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import re
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mailsvc.config import Settings
from mailsvc.logging import configure_logging
from tests.fixtures.dovecot import DovecotServer
from tests.fixtures.processes import MAILSVC, service_env
from tests.fixtures.waiting import eventually


async def test_an_idle_worker_at_info_logs_nothing_per_cron_run(
    settings: Settings,
    isolated_database: str,
    isolated_redis: str,
    dovecot: DovecotServer,
    tmp_path: Path,
) -> None:
    env = service_env(
        settings,
        database_url=isolated_database,
        redis_url=isolated_redis,
        ca_file=dovecot.ca_cert_path,
        data_dir=tmp_path,
        LOG_LEVEL="INFO",
    )
    worker = await asyncio.create_subprocess_exec(
        MAILSVC, "worker", env=env, cwd=tmp_path,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert worker.stderr is not None
    lines: list[dict[str, Any]] = []

    async def read_log(stream: asyncio.StreamReader) -> None:
        async for raw in stream:
            if raw.startswith(b"{"):
                lines.append(json.loads(raw))

    reading = asyncio.create_task(read_log(worker.stderr))
    try:

        async def started() -> bool:
            assert worker.returncode is None, "the worker exited"
            return any(line["event"] == "worker.started" for line in lines)

        await eventually(started, within=30, what="worker.started logged")
        # The outbox and webhook sweeps run at start-up (and every few seconds): idle
        # crons, whose runs the shutdown line below counts.
        await asyncio.sleep(4)
    finally:
        if worker.returncode is None:
            worker.send_signal(signal.SIGTERM)
        await asyncio.wait_for(worker.wait(), 30)
        await asyncio.wait_for(reading, 5)

    events = [line["event"] for line in lines]
    after_start = events[events.index("worker.started") + 1 :]
    shutdown = re.match(r"shutdown on SIGTERM.* (\d+) jobs complete", after_start[0])
    assert shutdown is not None, after_start
    assert int(shutdown[1]) >= 2, after_start[0]
    # The shutdown line came right after start-up: the cron runs between said nothing.
    assert not [event for event in events if "→" in event or "←" in event], events


@pytest.fixture
def info_log() -> Iterator[io.StringIO]:
    """mailsvc's logging at INFO, rendered into a buffer; the run's level after."""
    before = logging.getLogger().level
    configure_logging("INFO")
    root = logging.getLogger()
    buffer = io.StringIO()
    capture = logging.StreamHandler(buffer)
    capture.setFormatter(root.handlers[-1].formatter)
    root.addHandler(capture)
    try:
        yield buffer
    finally:
        root.removeHandler(capture)
        configure_logging(logging.getLevelName(before))


def test_arq_job_lines_are_debug_and_its_warnings_stay(info_log: io.StringIO) -> None:
    arq = logging.getLogger("arq.worker")
    # arq's own formats (arq/worker.py), as a job starts, ends and the health is noted.
    arq.info("%6.2fs → %s(%s)%s", 0.01, "cron:record_heartbeat:1", "", "")
    arq.info("%6.2fs ← %s ● %s", 0.0, "cron:record_heartbeat:1", "")
    arq.info("recording health: %s", "j_complete=1 j_failed=0")
    arq.info("Starting worker for %d functions: %s", 1, "sync_account")
    arq.warning("job %s expired", "abc")
    arq.error("%6.2fs ! %s failed, %s: %s", 0.1, "send_outbox:1", "ValueError", "boom")

    logged = [json.loads(line) for line in info_log.getvalue().splitlines()]
    assert [(line["level"], line["event"]) for line in logged] == [
        ("info", "Starting worker for 1 functions: sync_account"),
        ("warning", "job abc expired"),
        ("error", "  0.10s ! send_outbox:1 failed, ValueError: boom"),
    ]


def test_at_debug_arq_job_lines_are_kept_as_debug(info_log: io.StringIO) -> None:
    configure_logging("DEBUG")
    logging.getLogger("arq.worker").info("%6.2fs ← %s ● %s", 0.0, "cron:record_heartbeat:1", "")
    [line] = [json.loads(line) for line in info_log.getvalue().splitlines()]
    assert line["level"] == "debug"
    assert line["event"] == "  0.00s ← cron:record_heartbeat:1 ● "
