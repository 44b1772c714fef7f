import base64
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from mailsvc.config import Settings, generate_encryption_key
from mailsvc.kit.crypto import SecretBox
from mailsvc.models import Account
from mailsvc.runtime import Runtime
from tests.fixtures.app import account_body
from tests.fixtures.dovecot import DovecotServer, TestMailUser
from tests.fixtures.net import free_port
from tests.fixtures.processes import run_mailsvc
from tests.fixtures.smtp_server import SmtpRelay


@pytest.fixture
def cli_env(settings: Settings, tmp_path: Any) -> dict[str, str]:
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


async def test_check_passes_with_one_line_per_check(cli_env: dict[str, str]) -> None:
    result = await run_mailsvc("check", env=cli_env)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert [line.split(":")[0] for line in lines] == [
        "PASS settings", "PASS secrets", "PASS mail_tls_ca_file",
        "PASS database", "PASS redis", "PASS migrations", "PASS connections",
    ]  # fmt: skip


async def test_check_fails_naming_redis(cli_env: dict[str, str]) -> None:
    cli_env["REDIS_URL"] = f"redis://127.0.0.1:{free_port()}/0"
    result = await run_mailsvc("check", env=cli_env)
    assert result.returncode == 1
    assert "FAIL redis: unreachable" in result.stdout
    assert "PASS database" in result.stdout


async def test_check_fails_when_the_api_processes_cannot_fit_max_connections(
    cli_env: dict[str, str],
) -> None:
    cli_env["API_WORKERS"] = "1000"
    result = await run_mailsvc("check", env=cli_env)
    assert result.returncode == 1
    [line] = _failures(result.stdout)
    assert line.startswith("FAIL connections: ")
    assert "1000 api processes x " in line
    assert line.endswith("Lower API_WORKERS or DATABASE_POOL_SIZE / DATABASE_READ_POOL_SIZE, "
                         "or raise the server's max_connections")  # fmt: skip


def _failures(stdout: str) -> list[str]:
    return [line for line in stdout.splitlines() if not line.startswith("PASS ")]


@pytest.mark.parametrize(
    ("missing", "line"),
    [
        ("JWT_SECRET", "FAIL secrets: JWT_SECRET is not set"),
        ("ENCRYPTION_KEY", "FAIL secrets: ENCRYPTION_KEY is not set"),
    ],
)
async def test_check_fails_on_a_missing_key_in_production_with_one_clear_line(
    cli_env: dict[str, str], missing: str, line: str
) -> None:
    del cli_env[missing]
    result = await run_mailsvc("check", env=cli_env)
    assert result.returncode == 1
    assert _failures(result.stdout) == [line]


@pytest.mark.parametrize(
    ("ca_file", "reason"),
    [
        ("missing.pem", "No such file or directory"),
        (".", "Is a directory"),  # what an empty MAIL_TLS_CA_FILE used to become
        ("garbage.pem", "not a PEM CA certificate"),
    ],
)
async def test_check_fails_on_an_unusable_ca_file_as_startup_would(
    cli_env: dict[str, str], tmp_path: Path, ca_file: str, reason: str
) -> None:
    (tmp_path / "garbage.pem").write_text("not a certificate\n")
    path = (tmp_path / ca_file).resolve()
    cli_env["MAIL_TLS_CA_FILE"] = str(path)
    result = await run_mailsvc("check", env=cli_env)
    assert result.returncode == 1
    [failure] = _failures(result.stdout)
    assert failure.startswith(f"FAIL mail_tls_ca_file: MAIL_TLS_CA_FILE={path}: {reason}")
    # `serve` stops on the same reason, in one line instead of a lifespan traceback.
    serve = await run_mailsvc(
        "serve", "--host", "127.0.0.1", "--port", str(free_port()), env=cli_env
    )
    assert serve.returncode == 2
    assert serve.stderr.startswith(f"mailsvc: MAIL_TLS_CA_FILE={path}: {reason}")
    assert len(serve.stderr.splitlines()) == 1


async def test_check_names_a_setting_of_the_wrong_type_and_stops(
    cli_env: dict[str, str],
) -> None:
    cli_env["ACCESS_TOKEN_EXPIRE_MINUTES"] = "soon"
    result = await run_mailsvc("check", env=cli_env)
    assert result.returncode == 1
    assert result.stdout.splitlines() == [
        "FAIL settings: ACCESS_TOKEN_EXPIRE_MINUTES: Input should be a valid integer, "
        "unable to parse string as an integer"
    ]


async def test_check_without_database_url_says_so(cli_env: dict[str, str]) -> None:
    del cli_env["DATABASE_URL"]
    result = await run_mailsvc("check", env=cli_env)
    assert result.returncode == 1
    assert _failures(result.stdout) == [
        "FAIL database: DATABASE_URL is not set; set it, or run `mailsvc dev` for embedded servers",
        "FAIL migrations: skipped: database failed",
        "FAIL connections: skipped: database failed",
    ]


async def test_serve_refuses_to_start_without_secrets(cli_env: dict[str, str]) -> None:
    del cli_env["ENCRYPTION_KEY"]
    result = await run_mailsvc("serve", "--port", str(free_port()), env=cli_env)
    assert result.returncode == 2
    assert result.stderr.strip() == "mailsvc: ENCRYPTION_KEY is not set"


async def test_apikey_create_prints_a_key_that_logs_in(
    cli_env: dict[str, str], client: httpx.AsyncClient, tenant_id: str
) -> None:
    result = await run_mailsvc("apikey", "create", "--tenant", tenant_id, env=cli_env)
    assert result.returncode == 0, result.stderr
    key = result.stdout.strip()
    assert key.startswith("msk_")
    login = await client.post("/auth/login", json={"api_key": key})
    assert login.status_code == 200


async def test_apikey_create_refuses_unknown_scopes(cli_env: dict[str, str]) -> None:
    result = await run_mailsvc(
        "apikey", "create", "--tenant", "t1", "--scopes", "everything", env=cli_env
    )
    assert result.returncode == 2
    assert "unknown scopes: everything" in result.stderr


async def test_token_create_prints_a_token_with_the_given_scopes(
    cli_env: dict[str, str], client: httpx.AsyncClient, tenant_id: str
) -> None:
    result = await run_mailsvc(
        "token", "create", "--tenant", tenant_id, "--scopes", "accounts:read", env=cli_env
    )
    assert result.returncode == 0, result.stderr
    headers = {"Authorization": f"Bearer {result.stdout.strip()}"}
    assert (await client.get("/api/accounts", headers=headers)).status_code == 200
    assert (await client.post("/api/accounts", headers=headers, json={})).status_code == 403


async def test_keys_generate_prints_a_32_byte_key(cli_env: dict[str, str]) -> None:
    result = await run_mailsvc("keys", "generate", env=cli_env)
    assert len(base64.urlsafe_b64decode(result.stdout.strip())) == 32


async def test_keys_rotate_reseals_under_the_new_key(
    app: FastAPI,
    client: httpx.AsyncClient,
    auth: dict[str, str],
    cli_env: dict[str, str],
    dovecot: DovecotServer,
    smtp_relay: SmtpRelay,
    mail_user: TestMailUser,
) -> None:
    created = await client.post(
        "/api/accounts", json=account_body(dovecot, smtp_relay, mail_user), headers=auth
    )
    account_id = uuid.UUID(created.json()["id"])
    old_key = cli_env["ENCRYPTION_KEY"]
    new_key = generate_encryption_key()

    rotated = await run_mailsvc(
        "keys", "rotate", env={**cli_env, "ENCRYPTION_KEY": new_key, "ENCRYPTION_KEYS_OLD": old_key}
    )
    assert rotated.returncode == 0, rotated.stderr
    assert int(rotated.stdout.split()[1]) >= 2  # this account's IMAP and SMTP secrets at least

    state: Runtime = app.state.mailsvc
    new_box = SecretBox(base64.urlsafe_b64decode(new_key))
    async with state.sessionmaker() as session:
        account = await session.get(Account, account_id)
        assert account is not None
        assert not new_box.needs_rotation(account.imap_secret)
        assert not new_box.needs_rotation(account.smtp_secret)

    # Rotate back, so the rest of the run (which holds the old key) can still read them.
    back = await run_mailsvc(
        "keys", "rotate", env={**cli_env, "ENCRYPTION_KEY": old_key, "ENCRYPTION_KEYS_OLD": new_key}
    )
    assert back.returncode == 0, back.stderr
    get = await client.put(
        f"/api/accounts/{account_id}",
        json={**account_body(dovecot, smtp_relay, mail_user), "display_name": "after rotation"},
        headers=auth,
    )
    assert get.status_code == 200, get.text
