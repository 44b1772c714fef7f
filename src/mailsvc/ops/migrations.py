"""Alembic, driven from code: `mailsvc migrate`, readiness and the test fixtures use it."""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory


def _alembic_ini() -> Path:
    """alembic.ini: `ALEMBIC_CONFIG`, the wheel's bundled copy, or the source checkout's."""
    override = os.environ.get("ALEMBIC_CONFIG")
    if override:
        return Path(override)
    package_dir = Path(__file__).resolve().parents[1]
    for candidate in (package_dir / "alembic.ini", package_dir.parents[1] / "alembic.ini"):
        if candidate.exists():
            return candidate
    raise FileNotFoundError("alembic.ini not found; set ALEMBIC_CONFIG to its path")


def alembic_config(database_url: str | None = None) -> Config:
    """An alembic Config; `database_url` overrides the settings' `DATABASE_URL`."""
    config = Config(str(_alembic_ini()))
    if database_url is not None:
        config.attributes["database_url"] = database_url
    return config


def upgrade_to_head(database_url: str | None = None) -> None:
    """Apply every migration. Blocking: call it from a thread inside an event loop."""
    command.upgrade(alembic_config(database_url), "head")


@lru_cache(maxsize=1)
def head_revision() -> str | None:
    """The newest revision shipped with this code."""
    return ScriptDirectory.from_config(alembic_config()).get_current_head()
