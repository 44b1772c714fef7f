import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mailsvc.config import Environment, SettingsError, generate_encryption_key, load_settings
from mailsvc.dev import announce_servers, hold_data_dir

STRONG_SECRET = "q8Vn3Lr0xZt5Wm2Kp7Hy4Jc9Bd6Fs1Ga"


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("ENVIRONMENT", "JWT_SECRET", "ENCRYPTION_KEY", "ENCRYPTION_KEYS_OLD",
                 "JWT_ALGORITHM", "DATABASE_URL", "REDIS_URL"):  # fmt: skip
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)  # no stray .env file
    monkeypatch.setenv("DATA_DIR", str(tmp_path / "data"))


def test_production_without_jwt_secret_names_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ENCRYPTION_KEY", generate_encryption_key())
    with pytest.raises(SettingsError, match=r"^JWT_SECRET is not set$"):
        load_settings()


def test_production_with_weak_jwt_secret_names_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JWT_SECRET", "secret")
    monkeypatch.setenv("ENCRYPTION_KEY", generate_encryption_key())
    with pytest.raises(SettingsError, match=r"^JWT_SECRET is weak"):
        load_settings()


def test_production_without_encryption_key_names_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JWT_SECRET", STRONG_SECRET)
    with pytest.raises(SettingsError, match=r"^ENCRYPTION_KEY is not set$"):
        load_settings()


def test_short_encryption_key_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JWT_SECRET", STRONG_SECRET)
    monkeypatch.setenv("ENCRYPTION_KEY", "c2hvcnQ=")
    with pytest.raises(SettingsError, match=r"^ENCRYPTION_KEY must decode to 32 bytes"):
        load_settings()


def test_production_with_good_secrets_loads(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JWT_SECRET", STRONG_SECRET)
    monkeypatch.setenv("ENCRYPTION_KEY", generate_encryption_key())
    assert load_settings().is_production


def test_development_generates_missing_secrets_once(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("ENVIRONMENT", "development")
    first = load_settings()
    second = load_settings()
    assert first.jwt_secret is not None
    assert second.jwt_secret is not None
    assert first.jwt_secret.get_secret_value() == second.jwt_secret.get_secret_value()
    stored = tmp_path / "data" / "dev-secrets.json"
    assert stored.stat().st_mode & 0o777 == 0o600
    assert set(json.loads(stored.read_text())) == {"jwt_secret", "encryption_key"}


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("postgresql://u@h/db", "postgresql+asyncpg://u@h/db"),
        ("postgres://u@h/db", "postgresql+asyncpg://u@h/db"),
        ("postgresql+asyncpg://u@h/db", "postgresql+asyncpg://u@h/db"),
    ],
)
def test_database_url_gets_the_asyncpg_driver(
    monkeypatch: pytest.MonkeyPatch, given: str, expected: str
) -> None:
    monkeypatch.setenv("ENVIRONMENT", "development")
    monkeypatch.setenv("DATABASE_URL", given)
    assert load_settings().async_database_url == expected


def test_empty_values_mean_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    """As `.env.example` ships them: `NAME=` is the default, never Path(".") or ""."""
    monkeypatch.setenv("ENVIRONMENT", "development")
    for name in ("MAIL_TLS_CA_FILE", "JWT_SECRET", "ENCRYPTION_KEY", "DATABASE_URL"):
        monkeypatch.setenv(name, "")
    settings = load_settings()
    assert settings.mail_tls_ca_file is None
    assert settings.database_url is None
    assert settings.jwt_secret is not None
    assert len(settings.jwt_secret.get_secret_value()) >= 32  # generated, not ""


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("ACCESS_TOKEN_EXPIRE_MINUTES", "0", "ACCESS_TOKEN_EXPIRE_MINUTES: Input should be"),
        ("LOG_LEVEL", "loud", "LOG_LEVEL: must be DEBUG, INFO, WARNING, ERROR or CRITICAL"),
        ("JWT_ALGORITHM", "s3cret-none", "JWT_ALGORITHM: Input should be 'HS256'"),
    ],
)
def test_a_bad_value_is_named_and_not_repeated(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, message: str
) -> None:
    monkeypatch.setenv("ENVIRONMENT", "development")
    monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError, match=f"^{re.escape(message)}") as raised:
        load_settings()
    assert value not in str(raised.value)
    assert raised.value.__cause__ is None  # pydantic's error, which quotes it, is dropped
    assert raised.value.__suppress_context__


def test_processes_starting_together_share_one_generated_secret(tmp_path: Path) -> None:
    """The api, its --reload child, the worker and the CLI may all start at once."""
    data_dir, gate = tmp_path / "shared", tmp_path / "gate"
    gate.mkdir()
    # Each process imports, says so, and waits for the gate, so all of them reach the
    # empty DATA_DIR within a few microseconds of each other.
    program = (
        "import os, sys, time\n"
        "from mailsvc.config import load_settings\n"
        "open(os.path.join(sys.argv[1], sys.argv[2]), 'w').close()\n"
        "while not os.path.exists(os.path.join(sys.argv[1], 'go')): time.sleep(0.0005)\n"
        "s = load_settings()\n"
        "print(s.jwt_secret.get_secret_value(), s.encryption_key.get_secret_value())\n"
    )
    env = {
        **{k: v for k, v in os.environ.items() if k not in {"JWT_SECRET", "ENCRYPTION_KEY"}},
        "ENVIRONMENT": "development",
        "DATA_DIR": str(data_dir),
    }
    count = 12
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", program, str(gate), f"ready-{n}"],
            env=env,
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            text=True,
        )
        for n in range(count)
    ]
    deadline = time.monotonic() + 60
    while len(list(gate.glob("ready-*"))) < count:
        assert time.monotonic() < deadline, "processes did not start"
        time.sleep(0.01)
    (gate / "go").touch()
    outputs = {process.communicate(timeout=60)[0].strip() for process in processes}
    assert all(process.returncode == 0 for process in processes)
    stored = json.loads((data_dir / "dev-secrets.json").read_text())
    assert outputs == {f"{stored['jwt_secret']} {stored['encryption_key']}"}
    assert data_dir.stat().st_mode & 0o777 == 0o700
    assert [path.name for path in data_dir.iterdir()] == ["dev-secrets.json"]  # no temp files


def test_a_running_dev_lends_its_servers_to_commands_without_urls(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    data_dir = tmp_path / "data"
    urls = {"database_url": "postgresql://dev@/db?host=/x", "redis_url": "redis://127.0.0.1:1/0"}
    with hold_data_dir(data_dir):
        announce_servers(data_dir, **urls)
        announced = data_dir / "dev-servers.json"
        assert announced.stat().st_mode & 0o777 == 0o600
        settings = load_settings()  # no ENVIRONMENT, no URLs, no secrets
        assert settings.database_url == urls["database_url"]
        assert settings.redis_url == urls["redis_url"]
        assert settings.environment is Environment.DEVELOPMENT
        monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:2/0")
        assert load_settings().redis_url == "redis://127.0.0.1:2/0"  # what is set wins
    # The process that held the directory is gone: the file alone proves nothing.
    assert announced.exists()
    monkeypatch.setenv("ENVIRONMENT", "development")
    assert load_settings().database_url is None


def test_production_never_borrows_a_dev_servers(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    data_dir = tmp_path / "data"
    monkeypatch.setenv("ENVIRONMENT", "production")
    monkeypatch.setenv("JWT_SECRET", STRONG_SECRET)
    monkeypatch.setenv("ENCRYPTION_KEY", generate_encryption_key())
    with hold_data_dir(data_dir):
        announce_servers(data_dir, database_url="postgresql://dev@/db", redis_url="redis://x/0")
        settings = load_settings()
    assert settings.database_url is None
    assert settings.redis_url is None
    assert not (data_dir / "dev-secrets.json").exists()
