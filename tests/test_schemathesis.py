"""The OpenAPI contract holds against a live server: schemathesis, every check.

A real `mailsvc serve` on loopback, on the run's PostgreSQL and Redis, is fuzzed by
the schemathesis CLI with `--checks all` and every phase (examples, coverage,
fuzzing, stateful). Any failure (a 5xx, an undocumented status, a schema-valid
request refused, a schema-invalid one accepted, a wrong `Allow`, ...) fails the test.
Bounded by `--max-examples` and a fixed seed, so CI is reproducible; deselect it
locally with `-m 'not schemathesis'`.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path

import httpx
import pytest

from mailsvc.auth.scopes import ALL_SCOPES
from mailsvc.auth.tokens import TokenCodec
from mailsvc.config import Settings
from tests.fixtures.dovecot import DovecotServer
from tests.fixtures.net import free_port
from tests.fixtures.processes import MAILSVC, service_env, wait_until_serving

SCHEMATHESIS = str(Path(sys.executable).parent / "schemathesis")
# The exceptions to the default expectations, each with its reason, and the check that
# holds them to the problem codes they name.
CONFIG = Path(__file__).with_name("schemathesis.toml")
HOOKS = Path(__file__).with_name("schemathesis_hooks.py")
MAX_EXAMPLES = 10
TENANT = "fuzz"
RUN_SECONDS = 360

pytestmark = [pytest.mark.schemathesis, pytest.mark.timeout(RUN_SECONDS + 60)]


async def test_the_api_keeps_its_openapi_contract(
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
        IDLE_ENABLED="false",
        # The fuzzer sends thousands of requests a minute; rate limits are not under test.
        RATE_LIMIT_REQUESTS_PER_MINUTE="1000000",
        RATE_LIMIT_REQUESTS_PER_HOUR="10000000",
    )
    port = free_port()
    token = TokenCodec(settings).issue(
        subject="schemathesis", tenants=[TENANT], scopes=list(ALL_SCOPES), expires_in=3600
    )
    server = await asyncio.create_subprocess_exec(
        MAILSVC, "serve", "--host", "127.0.0.1", "--port", str(port),
        env=env, cwd=tmp_path,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient(base_url=base) as client:
            await wait_until_serving(client, within=30)
        fuzzer = await asyncio.create_subprocess_exec(
            SCHEMATHESIS, "--config-file", str(CONFIG), "run", f"{base}/openapi.json",
            "--header", f"Authorization: Bearer {token}",
            # A generated X-Tenant-ID names a tenant the token does not grant (403), which
            # would keep most requests from reaching the code behind the checks.
            "--header", f"X-Tenant-ID: {TENANT}",
            "--checks", "all",
            "--phases", "examples,coverage,fuzzing,stateful",
            "--max-examples", str(MAX_EXAMPLES),
            "--seed", "1",
            "--workers", "2",
            "--request-timeout", "10",
            # An event stream never ends, so it has no response to check: its
            # parameters are the feed's, checked through GET /api/changes.
            "--exclude-operation-id", "stream_events",
            "--no-color",
            env={"PATH": env["PATH"], "HOME": str(tmp_path), "SCHEMATHESIS_HOOKS": str(HOOKS)},
            cwd=tmp_path,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
        output, _ = await asyncio.wait_for(fuzzer.communicate(), RUN_SECONDS)
    finally:
        if server.returncode is None:
            server.send_signal(signal.SIGTERM)
        await server.wait()
    report = output.decode(errors="replace")
    (tmp_path / "schemathesis.txt").write_text(report)
    # The failures come before a long summary; show them first.
    failures = report.find(" FAILURES ")
    assert fuzzer.returncode == 0, report[max(failures, 0) :][:20_000]
