"""Service settings, read from the environment and `.env`.

Names are the unprefixed ones of the original specification (`DATABASE_URL`,
`JWT_SECRET`, ...). Production refuses to start with a missing or weak secret;
development generates the secrets it lacks once and keeps them in `DATA_DIR`
so tokens and stored credentials survive a restart.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import secrets
from enum import StrEnum
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

MIN_JWT_SECRET_LENGTH = 32
ENCRYPTION_KEY_BYTES = 32


class Environment(StrEnum):
    PRODUCTION = "production"
    DEVELOPMENT = "development"
    TEST = "test"


class SettingsError(Exception):
    """A setting is missing or unusable; the message names the setting."""


def decode_encryption_key(value: str, *, setting: str) -> bytes:
    """Decode a base64 (standard or url-safe) AES-256 key, naming `setting` on error."""
    padded = value.strip() + "=" * (-len(value.strip()) % 4)
    try:
        key = base64.urlsafe_b64decode(padded.replace("+", "-").replace("/", "_"))
    except (binascii.Error, ValueError) as exc:
        raise SettingsError(f"{setting} is not valid base64") from exc
    if len(key) != ENCRYPTION_KEY_BYTES:
        raise SettingsError(
            f"{setting} must decode to {ENCRYPTION_KEY_BYTES} bytes, got {len(key)}; "
            "generate one with `mailsvc keys generate`"
        )
    return key


def generate_encryption_key() -> str:
    """A new random AES-256 key in the form `ENCRYPTION_KEY` expects."""
    return base64.urlsafe_b64encode(secrets.token_bytes(ENCRYPTION_KEY_BYTES)).decode()


class Settings(BaseSettings):
    """Every setting of mailsvc; `.env.example` documents each one."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore", case_sensitive=False)

    environment: Environment = Environment.PRODUCTION
    host: str = "0.0.0.0"
    port: int = 5000
    log_level: str = "INFO"
    data_dir: Path = Path(".mailsvc")

    database_url: str | None = None
    database_pool_size: int = 10
    redis_url: str | None = None

    jwt_secret: SecretStr | None = None
    jwt_algorithm: Literal["HS256", "RS256", "ES256"] = "HS256"
    jwt_private_key: SecretStr | None = None
    jwt_public_key: str | None = None
    jwt_issuer: str = "mailsvc"
    jwt_audience: str = "mailsvc-api"
    access_token_expire_minutes: int = Field(default=60, ge=1, le=60 * 24 * 30)

    encryption_key: SecretStr | None = None
    encryption_keys_old: SecretStr | None = None

    rate_limit_requests_per_minute: int = Field(default=600, ge=0)
    rate_limit_requests_per_hour: int = Field(default=20_000, ge=0)

    allow_private_hosts: bool = False
    mail_tls_ca_file: Path | None = None
    mail_connect_timeout_seconds: float = Field(default=15.0, gt=0)
    max_request_body_bytes: int = Field(default=30 * 1024 * 1024, gt=0)

    sync_batch_messages: int = Field(default=250, ge=1, le=5000)
    sync_batch_bytes: int = Field(default=16 * 1024 * 1024, ge=64 * 1024)
    sync_max_message_bytes: int = Field(default=10 * 1024 * 1024, ge=64 * 1024)
    sync_parse_processes: int = Field(default=0, ge=0)
    sync_resync_interval_minutes: int = Field(default=15, ge=0)

    send_max_recipients: int = Field(default=100, ge=1, le=1000)
    send_max_message_bytes: int = Field(default=25 * 1024 * 1024, ge=64 * 1024)
    send_rate_limit_per_minute: int = Field(default=30, ge=0)
    send_rate_limit_per_hour: int = Field(default=500, ge=0)
    send_max_attempts: int = Field(default=8, ge=1, le=50)
    send_retry_base_seconds: float = Field(default=30.0, gt=0)
    send_retry_max_seconds: float = Field(default=3600.0, gt=0)
    # A process that claimed a send and then died holds it this long at most.
    send_lease_seconds: float = Field(default=300.0, gt=0)

    change_retention_days: int = Field(default=30, ge=1)
    events_keepalive_seconds: float = Field(default=15.0, gt=0)
    events_send_timeout_seconds: float = Field(default=30.0, gt=0)

    # Webhooks: one POST may take WEBHOOK_TIMEOUT_SECONDS in all; failures are retried
    # with exponential backoff, a delivery is given up after WEBHOOK_MAX_ATTEMPTS, and a
    # webhook is disabled after WEBHOOK_DISABLE_AFTER_FAILURES given-up deliveries in a
    # row (0: never).
    webhook_timeout_seconds: float = Field(default=10.0, gt=0, le=120)
    webhook_max_attempts: int = Field(default=15, ge=1, le=100)
    webhook_retry_base_seconds: float = Field(default=5.0, gt=0)
    webhook_retry_max_seconds: float = Field(default=3600.0, gt=0)
    webhook_disable_after_failures: int = Field(default=5, ge=0)

    idle_enabled: bool = True
    idle_lease_ttl_seconds: float = Field(default=30.0, gt=0)
    idle_scan_interval_seconds: float = Field(default=5.0, gt=0)
    # RFC 2177: servers may drop an IDLE after 30 minutes of silence.
    idle_reissue_seconds: float = Field(default=29 * 60, gt=0, le=29 * 60)
    idle_poll_seconds: float = Field(default=60.0, gt=0)
    idle_max_connections_per_account: int = Field(default=3, ge=1)

    @field_validator("log_level")
    @classmethod
    def _upper_log_level(cls, value: str) -> str:
        level = value.upper()
        if level not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
            raise ValueError("LOG_LEVEL must be DEBUG, INFO, WARNING, ERROR or CRITICAL")
        return level

    @property
    def is_production(self) -> bool:
        return self.environment is Environment.PRODUCTION

    @property
    def async_database_url(self) -> str:
        """`DATABASE_URL` with the asyncpg driver, whatever scheme the user wrote."""
        if not self.database_url:
            raise SettingsError(
                "DATABASE_URL is not set; set it, or run `mailsvc dev` for embedded servers"
            )
        url = self.database_url
        for prefix in ("postgresql+asyncpg://", "postgresql://", "postgres://"):
            if url.startswith(prefix):
                return "postgresql+asyncpg://" + url.removeprefix(prefix)
        raise SettingsError("DATABASE_URL must be a postgresql:// URL")

    @property
    def required_redis_url(self) -> str:
        if not self.redis_url:
            raise SettingsError(
                "REDIS_URL is not set; set it, or run `mailsvc dev` for embedded servers"
            )
        return self.redis_url

    def encryption_keys(self) -> tuple[bytes, list[bytes]]:
        """The current key and the old keys still accepted for decryption."""
        if self.encryption_key is None:
            raise SettingsError("ENCRYPTION_KEY is not set")
        current = decode_encryption_key(
            self.encryption_key.get_secret_value(), setting="ENCRYPTION_KEY"
        )
        old: list[bytes] = []
        if self.encryption_keys_old is not None:
            for part in self.encryption_keys_old.get_secret_value().split(","):
                if part.strip():
                    old.append(decode_encryption_key(part, setting="ENCRYPTION_KEYS_OLD"))
        return current, old

    def validate_secrets(self) -> None:
        """Raise `SettingsError` naming the first missing or weak secret."""
        if self.jwt_algorithm == "HS256":
            secret = self.jwt_secret.get_secret_value() if self.jwt_secret else ""
            if not secret:
                raise SettingsError("JWT_SECRET is not set")
            if len(secret) < MIN_JWT_SECRET_LENGTH or len(set(secret)) < 8:
                raise SettingsError(
                    f"JWT_SECRET is weak: use at least {MIN_JWT_SECRET_LENGTH} random characters"
                )
        else:
            if self.jwt_public_key is None:
                raise SettingsError(f"JWT_PUBLIC_KEY is required for {self.jwt_algorithm}")
        self.encryption_keys()


def _load_dev_secrets(settings: Settings) -> Settings:
    """Fill missing secrets in development from a file generated on first use."""
    path = settings.data_dir / "dev-secrets.json"
    stored: dict[str, str] = {}
    if path.exists():
        stored = json.loads(path.read_text())
    changed = False
    if "jwt_secret" not in stored:
        stored["jwt_secret"] = secrets.token_urlsafe(48)
        changed = True
    if "encryption_key" not in stored:
        stored["encryption_key"] = generate_encryption_key()
        changed = True
    if changed:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            json.dump(stored, handle)
    updates: dict[str, SecretStr] = {}
    if settings.jwt_secret is None:
        updates["jwt_secret"] = SecretStr(stored["jwt_secret"])
    if settings.encryption_key is None:
        updates["encryption_key"] = SecretStr(stored["encryption_key"])
    return settings.model_copy(update=updates)


def load_settings() -> Settings:
    """Read settings and make sure the secrets are usable (see module docstring)."""
    settings = Settings()
    if not settings.is_production:
        settings = _load_dev_secrets(settings)
    settings.validate_secrets()
    return settings


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, loaded once."""
    return load_settings()
