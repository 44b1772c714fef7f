"""`mailsvc dev` on a machine without DATABASE_URL / REDIS_URL: the whole service."""

import asyncio
import os
import re
import signal
import socket
from pathlib import Path

import httpx

from tests.fixtures.net import LOOPBACK, free_port
from tests.fixtures.processes import MAILSVC, Completed, live_process_cmdlines, run_mailsvc

STARTUP_TIMEOUT_SECONDS = 120


async def _wait_until_ready(
    url: str, process: asyncio.subprocess.Process, log: Path
) -> httpx.Response:
    async with httpx.AsyncClient() as client:
        for _ in range(STARTUP_TIMEOUT_SECONDS * 4):
            if process.returncode is not None:
                tail = (await asyncio.to_thread(log.read_text, errors="replace"))[-3000:]
                raise AssertionError(f"mailsvc dev exited early ({process.returncode}):\n{tail}")
            try:
                response = await client.get(url, timeout=2)
                if response.status_code == 200:
                    return response
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.25)
    raise AssertionError("mailsvc dev did not become ready")


def _env_without_servers() -> dict[str, str]:
    """This machine's environment minus what would point `mailsvc` at servers."""
    return {
        key: value
        for key, value in os.environ.items()
        if key
        not in {
            "DATABASE_URL",
            "REDIS_URL",
            "JWT_SECRET",
            "ENCRYPTION_KEY",
            "ENVIRONMENT",
            "DATA_DIR",
        }
    }


async def _mailsvc_in(cwd: Path, *args: str) -> Completed:
    """`mailsvc ARGS` run from `cwd` with PATH and HOME only: no URLs, no secrets."""
    process = await asyncio.create_subprocess_exec(
        MAILSVC, *args, cwd=cwd,
        env={"PATH": os.environ.get("PATH", ""), "HOME": os.environ.get("HOME", "/")},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    stdout, stderr = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    return Completed(process.returncode, stdout.decode(), stderr.decode())


async def test_dev_serves_docs_and_ready_then_stops_everything(tmp_path: Path) -> None:
    port = free_port()
    data_dir = tmp_path / "dev-data"
    env = _env_without_servers()
    log = tmp_path / "dev.log"
    with log.open("wb") as log_file:  # the child keeps its own copy
        process = await asyncio.create_subprocess_exec(
            MAILSVC, "dev", "--port", str(port), "--data-dir", str(data_dir),
            env=env, cwd=tmp_path,
            stdout=asyncio.subprocess.PIPE, stderr=log_file,
        )  # fmt: skip
    try:
        base = f"http://127.0.0.1:{port}"
        ready = await _wait_until_ready(f"{base}/ready", process, log)
        assert ready.json()["status"] == "ready"
        async with httpx.AsyncClient(base_url=base) as client:
            docs = await client.get("/docs")
            assert docs.status_code == 200
            assert "swagger-ui" in docs.text
            assert process.stdout is not None
            banner = (await process.stdout.read(4096)).decode()
            key = re.search(r"(msk_[A-Za-z0-9_-]+)", banner)
            assert key is not None, banner
            login = await client.post("/auth/login", json={"api_key": key.group(1)})
            assert login.status_code == 200
        assert any(str(data_dir) in line for line in live_process_cmdlines())
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGINT)
        await asyncio.wait_for(process.wait(), 60)
    assert process.returncode == 0
    leftovers = [line for line in live_process_cmdlines() if str(data_dir) in line]
    assert leftovers == []


async def test_dev_on_a_taken_port_says_port_before_starting_any_server(tmp_path: Path) -> None:
    data_dir = tmp_path / "dev-data"
    with socket.socket() as taken:
        taken.bind((LOOPBACK, 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = await run_mailsvc(
            "dev", "--port", str(port), "--data-dir", str(data_dir),
            env={"DATA_DIR": str(data_dir)}, wait_seconds=30,
        )  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.strip() == (
        f"mailsvc dev: port {port} on 127.0.0.1 is in use; choose another with --port"
    )
    assert "msk_" not in result.stdout  # no key printed for a service that never ran
    assert not data_dir.exists()  # no PostgreSQL, no Redis, nothing written


async def test_commands_beside_a_running_dev_use_its_servers(tmp_path: Path) -> None:
    """The default data directory (.mailsvc in the working directory), no URLs anywhere."""
    port = free_port()
    log = tmp_path / "dev.log"
    with log.open("wb") as log_file:  # the child keeps its own copy
        process = await asyncio.create_subprocess_exec(
            MAILSVC, "dev", "--port", str(port), "--no-worker",
            env=_env_without_servers(), cwd=tmp_path,
            stdout=asyncio.subprocess.DEVNULL, stderr=log_file,
        )  # fmt: skip
    try:
        base = f"http://127.0.0.1:{port}"
        await _wait_until_ready(f"{base}/ready", process, log)
        created = await _mailsvc_in(tmp_path, "apikey", "create", "--tenant", "other")
        assert created.returncode == 0, created.stderr
        token = await _mailsvc_in(tmp_path, "token", "create", "--tenant", "other")
        assert token.returncode == 0, token.stderr
        async with httpx.AsyncClient(base_url=base) as client:
            login = await client.post("/auth/login", json={"api_key": created.stdout.strip()})
            assert login.status_code == 200, login.text
            # Signed by the CLI with the dev secrets in .mailsvc, accepted by the API.
            headers = {"Authorization": f"Bearer {token.stdout.strip()}"}
            assert (await client.get("/api/accounts", headers=headers)).status_code == 200
        check = await _mailsvc_in(tmp_path, "check")
        assert check.returncode == 0, check.stdout
        second = await _mailsvc_in(tmp_path, "dev", "--port", str(free_port()))
        assert second.returncode == 2
        assert "another `mailsvc dev` is running" in second.stderr
        assert "--data-dir" in second.stderr
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
        await asyncio.wait_for(process.wait(), 60)
    assert process.returncode == 0
    assert not (tmp_path / ".mailsvc" / "dev-servers.json").exists()
    after = await _mailsvc_in(tmp_path, "apikey", "create", "--tenant", "other")
    assert after.returncode == 2, after.stdout  # no servers to fall back on any more
