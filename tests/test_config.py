import json
from pathlib import Path

import pytest

from mailsvc.config import SettingsError, generate_encryption_key, load_settings

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
