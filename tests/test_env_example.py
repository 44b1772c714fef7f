"""`.env.example` documents every setting, and works as shipped: the README's
development row (copy it, set the two URLs, migrate, `uvicorn --reload`) serves."""

import asyncio
import json
import os
import shutil
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from mailsvc.config import Settings
from tests.fixtures.databases import create_database, drop_database
from tests.fixtures.net import free_port
from tests.fixtures.processes import MAILSVC
from tests.fixtures.waiting import eventually

ENV_EXAMPLE = Path(__file__).resolve().parents[1] / ".env.example"
DEPLOYMENT_ONLY = {"POSTGRES_PASSWORD"}
UVICORN = str(Path(MAILSVC).parent / "uvicorn")


def _documented() -> dict[str, str]:
    return dict(
        line.split("=", 1)
        for line in ENV_EXAMPLE.read_text().splitlines()
        if line and not line.startswith("#")
    )


def test_env_example_documents_every_setting_and_nothing_else() -> None:
    settings = {name.upper() for name in Settings.model_fields}
    assert set(_documented()) - DEPLOYMENT_ONLY == settings


def test_every_empty_value_in_env_example_means_unset(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in _documented():
        monkeypatch.delenv(name, raising=False)
    shutil.copy(ENV_EXAMPLE, tmp_path / ".env")
    monkeypatch.chdir(tmp_path)
    loaded = Settings()
    for name, value in _documented().items():
        if value == "" and name not in DEPLOYMENT_ONLY:
            assert getattr(loaded, name.lower()) is None, name


@pytest.fixture
async def fresh_database(postgres_server_url: str) -> AsyncIterator[str]:
    """An empty database: the test migrates it with `mailsvc migrate` as a user would."""
    url, name = await create_database(postgres_server_url, prefix="mailsvc_env", migrate=False)
    yield url
    await drop_database(postgres_server_url, name)


async def test_untouched_env_example_plus_two_urls_serves_with_uvicorn_reload(
    tmp_path: Path, fresh_database: str, isolated_redis: str
) -> None:
    shutil.copy(ENV_EXAMPLE, tmp_path / ".env")
    # Exactly what a developer's shell adds to the copied file: the two URLs.
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": os.environ.get("HOME", "/"),
        "DATABASE_URL": fresh_database,
        "REDIS_URL": isolated_redis,
    }

    async def mailsvc(*args: str) -> str:
        process = await asyncio.create_subprocess_exec(
            MAILSVC, *args, env=env, cwd=tmp_path,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        stdout, stderr = await asyncio.wait_for(process.communicate(), 60)
        assert process.returncode == 0, (args, stdout.decode(), stderr.decode())
        return stdout.decode()

    assert "at head" in await mailsvc("migrate")
    check = await mailsvc("check")
    assert all(line.startswith("PASS ") for line in check.splitlines()), check

    port = free_port()
    server = await asyncio.create_subprocess_exec(
        UVICORN, "mailsvc.app:app", "--reload", "--port", str(port),
        env=env, cwd=tmp_path,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:

            async def ready() -> bool:
                assert server.returncode is None, "uvicorn exited"
                try:
                    return (await client.get("/ready")).status_code == 200
                except httpx.TransportError:
                    return False

            await eventually(ready, within=60, what="/ready answers 200")
            key = (await mailsvc("apikey", "create", "--tenant", "envtest")).strip()
            login = await client.post("/auth/login", json={"api_key": key})
            assert login.status_code == 200, login.text
            # A token the CLI signs is accepted by the server: both use the one
            # generated JWT_SECRET in DATA_DIR.
            token = (await mailsvc("token", "create", "--tenant", "envtest")).strip()
            listed = await client.get("/api/accounts", headers={"Authorization": f"Bearer {token}"})
            assert listed.status_code == 200, listed.text
    finally:
        if server.returncode is None:
            server.send_signal(signal.SIGINT)
        _, stderr = await asyncio.wait_for(server.communicate(), 30)
    secrets_file = tmp_path / ".mailsvc" / "dev-secrets.json"
    assert secrets_file.stat().st_mode & 0o777 == 0o600
    assert set(json.loads(secrets_file.read_text())) == {"jwt_secret", "encryption_key"}
    stored = json.loads(secrets_file.read_text())
    assert all(value not in stderr.decode() for value in stored.values())
