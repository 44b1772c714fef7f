"""`mailsvc dev` on a machine without DATABASE_URL / REDIS_URL: the whole service."""

import asyncio
import os
import re
import signal
from pathlib import Path

import httpx

from tests.fixtures.net import free_port
from tests.fixtures.processes import MAILSVC, live_process_cmdlines

STARTUP_TIMEOUT_SECONDS = 120


async def _wait_until_ready(url: str, process: asyncio.subprocess.Process) -> httpx.Response:
    async with httpx.AsyncClient() as client:
        for _ in range(STARTUP_TIMEOUT_SECONDS * 4):
            assert process.returncode is None, "mailsvc dev exited early"
            try:
                response = await client.get(url, timeout=2)
                if response.status_code == 200:
                    return response
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.25)
    raise AssertionError("mailsvc dev did not become ready")


async def test_dev_serves_docs_and_ready_then_stops_everything(tmp_path: Path) -> None:
    port = free_port()
    data_dir = tmp_path / "dev-data"
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in {"DATABASE_URL", "REDIS_URL", "JWT_SECRET", "ENCRYPTION_KEY", "ENVIRONMENT"}
    }
    process = await asyncio.create_subprocess_exec(
        MAILSVC, "dev", "--port", str(port), "--data-dir", str(data_dir),
        env=env, cwd=tmp_path,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    try:
        base = f"http://127.0.0.1:{port}"
        ready = await _wait_until_ready(f"{base}/ready", process)
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
