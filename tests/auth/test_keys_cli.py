"""`mailsvc apikey list` and `mailsvc apikey revoke`, run as an operator would."""

from __future__ import annotations

import uuid
from pathlib import Path

import httpx
import pytest

from mailsvc.config import Settings
from tests.fixtures.app import remember_secret
from tests.fixtures.processes import run_mailsvc

COLUMNS = ["id", "name", "tenants", "scopes", "created_at", "last_used_at", "revoked_at"]


@pytest.fixture
def cli_env(settings: Settings, tmp_path: Path) -> dict[str, str]:
    assert settings.jwt_secret is not None
    assert settings.encryption_key is not None
    return {
        "ENVIRONMENT": "production",
        "DATABASE_URL": settings.async_database_url,
        "REDIS_URL": settings.required_redis_url,
        "JWT_SECRET": settings.jwt_secret.get_secret_value(),
        "ENCRYPTION_KEY": settings.encryption_key.get_secret_value(),
        "DATA_DIR": str(tmp_path),
    }


async def _mailsvc(*args: str, env: dict[str, str]) -> str:
    result = await run_mailsvc(*args, env=env)
    assert result.returncode == 0, result.stderr
    return result.stdout


def _rows(stdout: str) -> list[dict[str, str]]:
    header, *lines = stdout.splitlines()
    assert header.split("\t") == COLUMNS
    return [dict(zip(COLUMNS, line.split("\t"), strict=True)) for line in lines]


async def test_list_shows_the_keys_granting_a_tenant_and_revoke_ends_one(
    cli_env: dict[str, str], client: httpx.AsyncClient, tenant_id: str
) -> None:
    other = tenant_id + "-b"
    key = remember_secret(
        (
            await _mailsvc("apikey", "create", "--tenant", tenant_id, "--name", "ops", env=cli_env)
        ).strip()
    )
    shared = remember_secret(
        (
            await _mailsvc(
                "apikey", "create", "--tenant", tenant_id, "--tenant", other, env=cli_env
            )
        ).strip()
    )
    listed = await _mailsvc("apikey", "list", "--tenant", tenant_id, env=cli_env)
    assert key not in listed
    assert shared not in listed
    newest, oldest = _rows(listed)
    assert newest["tenants"] == ",".join(sorted([tenant_id, other]))
    assert oldest["tenants"] == tenant_id
    assert oldest["name"] == "ops"
    assert "keys:manage" in oldest["scopes"].split(",")
    assert oldest["revoked_at"] == "-"
    assert [row["id"] for row in _rows(await _mailsvc("apikey", "list", "--tenant", other,
                                                      env=cli_env))] == [newest["id"]]  # fmt: skip

    [revoked] = _rows(await _mailsvc("apikey", "revoke", oldest["id"], env=cli_env))
    assert revoked["id"] == oldest["id"]
    assert revoked["revoked_at"] != "-"
    login = await client.post("/auth/login", json={"api_key": key})
    assert login.status_code == 401
    # Again: the same answer, the first revoke's time.
    assert _rows(await _mailsvc("apikey", "revoke", oldest["id"], env=cli_env)) == [revoked]
    # An operator may revoke a key granting several tenants.
    [shared_row] = _rows(await _mailsvc("apikey", "revoke", newest["id"], env=cli_env))
    assert shared_row["revoked_at"] != "-"
    assert (await client.post("/auth/login", json={"api_key": shared})).status_code == 401


async def test_revoking_an_unknown_key_says_so(cli_env: dict[str, str]) -> None:
    result = await run_mailsvc("apikey", "revoke", str(uuid.uuid4()), env=cli_env)
    assert result.returncode == 2
    assert result.stderr == "mailsvc: API key not found\n"
