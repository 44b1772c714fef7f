"""Service settings, read from the environment and `.env`.

Names are the unprefixed ones of the original specification (`DATABASE_URL`,
`JWT_SECRET`, ...); an empty value means unset. Production refuses to start with a
missing or weak secret; outside production the secrets left unset are generated
once into `DATA_DIR` and shared by every process reading it, so tokens and stored
credentials agree between processes and survive a restart. Unset URLs are taken
from a `mailsvc dev` running in `DATA_DIR` (see `running_dev_servers`).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import fcntl
import json
import os
import secrets
import tempfile
from enum import StrEnum
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, ValidationError, field_validator
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

    # `NAME=` (in `.env` or the environment) means unset, as `.env.example` ships its
    # optional settings: an empty MAIL_TLS_CA_FILE must not become Path("."), nor an
    # empty JWT_SECRET a secret that development would not generate.
    model_config = SettingsConfigDict(
        env_file=".env", extra="ignore", case_sensitive=False, env_ignore_empty=True
    )

    environment: Environment = Environment.PRODUCTION
    host: str = "0.0.0.0"
    port: int = 5000
    log_level: str = "INFO"
    # When set, `/metrics` answers only `Authorization: Bearer <METRICS_TOKEN>`.
    metrics_token: SecretStr | None = None
    # The worker has no HTTP port besides this `GET /metrics` (same METRICS_TOKEN rule).
    worker_metrics_port: int | None = Field(default=None, ge=1, le=65535)
    worker_metrics_host: str = "127.0.0.1"
    data_dir: Path = Path(".mailsvc")

    database_url: str | None = None
    # Connections of each process's pools; unset: derived so that every process fits
    # PostgreSQL's max_connections (ops/capacity.py, checked by `mailsvc check`).
    database_pool_size: int | None = Field(default=None, ge=1)
    # The raw asyncpg pool of the hot reads (kit/reads.py), beside the pool above.
    database_read_pool_size: int | None = Field(default=None, ge=1)
    redis_url: str | None = None

    # `mailsvc serve` runs this many api processes (0: one per core of the machine or
    # container). With the replica counts they size the connection budget above.
    api_workers: int = Field(default=0, ge=0)
    api_replicas: int = Field(default=1, ge=1)
    worker_replicas: int = Field(default=1, ge=1)
    # From SIGTERM to exit: open requests finish, SSE streams end, IDLE leases move on.
    shutdown_grace_seconds: float = Field(default=20.0, ge=5)

    jwt_secret: SecretStr | None = None
    jwt_algorithm: Literal["HS256", "RS256", "ES256"] = "HS256"
    jwt_private_key: SecretStr | None = None
    jwt_public_key: str | None = None
    jwt_issuer: str = "mailsvc"
    jwt_audience: str = "mailsvc-api"
    access_token_expire_minutes: int = Field(default=60, ge=1, le=60 * 24 * 30)
    # How long an api process trusts what it last read of an API key (revoked or not)
    # before reading it again: a revoke reaches the tokens already issued by then in
    # the other processes; the process that revoked forgets its copy at once.
    api_key_status_cache_seconds: float = Field(default=30.0, ge=0, le=3600)

    encryption_key: SecretStr | None = None
    encryption_keys_old: SecretStr | None = None

    rate_limit_requests_per_minute: int = Field(default=600, ge=0)
    rate_limit_requests_per_hour: int = Field(default=20_000, ge=0)

    # The operator console at /console (console/); off where only the API is wanted.
    console_enabled: bool = True

    allow_private_hosts: bool = False
    mail_tls_ca_file: Path | None = None
    mail_connect_timeout_seconds: float = Field(default=15.0, gt=0)
    max_request_body_bytes: int = Field(default=30 * 1024 * 1024, gt=0)

    sync_batch_messages: int = Field(default=250, ge=1, le=5000)
    sync_batch_bytes: int = Field(default=16 * 1024 * 1024, ge=64 * 1024)
    sync_max_message_bytes: int = Field(default=10 * 1024 * 1024, ge=64 * 1024)
    sync_parse_processes: int = Field(default=0, ge=0)
    sync_parse_timeout_seconds: float = Field(default=1.0, gt=0)
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

    # OAuth2 accounts: an access token is refreshed this long before it expires; a
    # request to a provider's token endpoint may take OAUTH_HTTP_TIMEOUT_SECONDS in all.
    oauth_refresh_margin_seconds: float = Field(default=300.0, ge=0)
    oauth_http_timeout_seconds: float = Field(default=15.0, gt=0, le=120)

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

    # Full-text search: one Tantivy index per tenant on a disk the api and worker
    # processes share, or `postgres` for api processes on several hosts.
    search_backend: Literal["tantivy", "postgres"] = "tantivy"
    # Where the Tantivy indexes live; unset: DATA_DIR/search (`search_index_path`).
    search_index_dir: Path | None = None

    @field_validator("log_level")
    @classmethod
    def _upper_log_level(cls, value: str) -> str:
        level = value.upper()
        if level not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
            raise ValueError("must be DEBUG, INFO, WARNING, ERROR or CRITICAL")
        return level

    @property
    def is_production(self) -> bool:
        return self.environment is Environment.PRODUCTION

    @property
    def search_index_path(self) -> Path:
        """`SEARCH_INDEX_DIR`, or `DATA_DIR/search` when it is unset."""
        return self.search_index_dir or self.data_dir / "search"

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


DEV_SECRETS_FILE = "dev-secrets.json"
_DEV_SECRET_NAMES = ("jwt_secret", "encryption_key")


def _read_dev_secrets(path: Path) -> dict[str, str]:
    try:
        stored = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise SettingsError(f"{path} is unreadable ({type(exc).__name__}); delete it") from exc
    if not isinstance(stored, dict) or not all(isinstance(v, str) for v in stored.values()):
        raise SettingsError(f"{path} is not a JSON object of strings; delete it")
    return stored


def dev_secrets(data_dir: Path) -> dict[str, str]:
    """The development secrets kept in `data_dir`, generated on first use.

    Every process of a development setup (api, `--reload` children, worker, CLI)
    calls this, often at the same moment, and all must end with the same secrets or
    tokens and sealed credentials would not agree. So the file is written whole under
    a temporary name and hard-linked into place: exactly one process creates it, the
    others read what that one wrote. It is owner-only (0600) from its first byte.
    """
    path = data_dir / DEV_SECRETS_FILE
    stored = _read_dev_secrets(path)
    if all(name in stored for name in _DEV_SECRET_NAMES):
        return stored
    complete = {
        "jwt_secret": secrets.token_urlsafe(48),
        "encryption_key": generate_encryption_key(),
        **stored,
    }
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(dir=data_dir, prefix=".dev-secrets-")  # mode 0600
    try:
        with os.fdopen(fd, "w") as handle:
            json.dump(complete, handle)
        if stored:
            # An older file lacking a secret: keep what it has, add the rest.
            os.replace(temporary, path)
            return complete
        try:
            os.link(temporary, path)
        except FileExistsError:
            return _read_dev_secrets(path)  # another process was first: use its secrets
        return complete
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)


def _with_dev_secrets(settings: Settings) -> Settings:
    """Fill secrets left unset in development from `DATA_DIR` (see `dev_secrets`)."""
    if settings.jwt_secret is not None and settings.encryption_key is not None:
        return settings
    stored = dev_secrets(settings.data_dir)
    updates: dict[str, SecretStr] = {}
    if settings.jwt_secret is None:
        updates["jwt_secret"] = SecretStr(stored["jwt_secret"])
    if settings.encryption_key is None:
        updates["encryption_key"] = SecretStr(stored["encryption_key"])
    return settings.model_copy(update=updates)


DEV_LOCK_FILE = "dev.lock"
DEV_SERVERS_FILE = "dev-servers.json"


def _dev_lock_held(data_dir: Path) -> bool:
    """Whether a `mailsvc dev` process holds `data_dir` right now.

    `mailsvc dev` keeps an exclusive flock on DEV_LOCK_FILE while it runs; the kernel
    drops it when that process ends however it ends, so a crashed run's leftovers
    never pass for live servers (a pid in a file could be reused).
    """
    try:
        fd = os.open(data_dir / DEV_LOCK_FILE, os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # also releases the probe's own lock, when it got one
    return False


def running_dev_servers(data_dir: Path) -> dict[str, str] | None:
    """The `database_url` and `redis_url` a running `mailsvc dev` announced in
    `data_dir`, or None when no `mailsvc dev` runs there."""
    try:
        announced = json.loads((data_dir / DEV_SERVERS_FILE).read_text())
    except (FileNotFoundError, ValueError):
        return None  # none, or being written: as if no `mailsvc dev` ran yet
    if not _dev_lock_held(data_dir) or not isinstance(announced, dict):
        return None
    urls = {name: announced.get(name) for name in ("database_url", "redis_url")}
    if not all(isinstance(url, str) and url for url in urls.values()):
        return None
    return {name: str(url) for name, url in urls.items()}


def _with_running_dev_servers(settings: Settings) -> Settings:
    """Fill an unset DATABASE_URL / REDIS_URL from a `mailsvc dev` running in `DATA_DIR`.

    So `mailsvc apikey create ...` beside `mailsvc dev` needs no hand-written URLs. A
    process found that way runs in development (its secrets are the dev ones in
    `DATA_DIR`) unless ENVIRONMENT says otherwise; ENVIRONMENT=production never
    looks.
    """
    if settings.database_url and settings.redis_url:
        return settings
    environment_given = "environment" in settings.model_fields_set
    if environment_given and settings.is_production:
        return settings
    announced = running_dev_servers(settings.data_dir)
    if announced is None:
        return settings
    updates: dict[str, object] = {
        name: url for name, url in announced.items() if not getattr(settings, name)
    }
    if not environment_given:
        updates["environment"] = Environment.DEVELOPMENT
    return settings.model_copy(update=updates)


def settings_from_environment() -> Settings:
    """Settings from the environment and `.env` alone, nothing filled in.

    A value of the wrong type or range is a `SettingsError` naming the setting.
    """
    try:
        return Settings()
    except ValidationError as exc:
        error = exc.errors()[0]
        name = str(error["loc"][0]).upper() if error["loc"] else "settings"
        # Our own validators already name the setting in their message.
        reason = str(error["ctx"]["error"]) if error["type"] == "value_error" else error["msg"]
        # `from None`: pydantic's own message repeats the input, which may be a secret.
        raise SettingsError(f"{name}: {reason}") from None


def read_settings() -> Settings:
    """Settings as every entry point sees them, before the secrets are checked.

    From the environment and `.env`; unset URLs from a running `mailsvc dev` in
    `DATA_DIR`; outside production, unset secrets from `DATA_DIR` (generated once).
    """
    settings = _with_running_dev_servers(settings_from_environment())
    if not settings.is_production:
        settings = _with_dev_secrets(settings)
    return settings


def load_settings() -> Settings:
    """`read_settings()` with usable secrets, or a `SettingsError` naming the first one
    missing or weak (see module docstring)."""
    settings = read_settings()
    settings.validate_secrets()
    return settings


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, loaded once."""
    return load_settings()
