"""`mailsvc dev`: the whole service on one machine with nothing but Python.

Starts embedded PostgreSQL and Redis when `DATABASE_URL` / `REDIS_URL` are not set,
migrates, prints a fresh API key for tenant `dev`, runs a worker and serves the API
on 127.0.0.1. Ctrl-C stops everything it started.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
from pathlib import Path

from mailsvc.embedded import EmbeddedPostgres, EmbeddedRedis

DEV_TENANT = "dev"


def _banner(lines: list[str]) -> None:
    sys.stdout.write("\n".join(["", *lines, ""]) + "\n")
    sys.stdout.flush()


def run_dev(*, data_dir: Path, port: int, with_worker: bool) -> None:
    data_dir = data_dir.resolve()
    started: list[EmbeddedPostgres | EmbeddedRedis] = []
    worker: subprocess.Popen[bytes] | None = None
    try:
        os.environ.setdefault("ENVIRONMENT", "development")
        os.environ.setdefault("DATA_DIR", str(data_dir))
        os.environ.setdefault("ALLOW_PRIVATE_HOSTS", "true")
        if not os.environ.get("DATABASE_URL"):
            postgres = EmbeddedPostgres(data_dir / "postgres")
            started.append(postgres)
            os.environ["DATABASE_URL"] = postgres.start()
        if not os.environ.get("REDIS_URL"):
            redis = EmbeddedRedis(data_dir / "redis")
            started.append(redis)
            os.environ["REDIS_URL"] = redis.start()

        from mailsvc.config import get_settings
        from mailsvc.ops.migrations import upgrade_to_head

        get_settings.cache_clear()
        settings = get_settings()
        upgrade_to_head(settings.async_database_url)
        api_key = asyncio.run(_create_dev_key())
        if with_worker:
            worker = spawn_worker(dict(os.environ))
        _banner(
            [
                f"mailsvc dev: http://127.0.0.1:{port}/docs",
                f"  API key (tenant {DEV_TENANT!r}): {api_key}",
                f"  curl -s -X POST http://127.0.0.1:{port}/auth/login "
                f"-H 'content-type: application/json' -d '{{\"api_key\": \"{api_key}\"}}'",
                f"  data: {data_dir}   Ctrl-C stops everything",
            ]
        )
        import uvicorn

        uvicorn.run("mailsvc.app:app", host="127.0.0.1", port=port, log_config=None)
    finally:
        if worker is not None:
            worker.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                worker.wait(timeout=10)
            if worker.poll() is None:
                worker.kill()
        for server in reversed(started):
            server.stop()


async def _create_dev_key() -> str:
    from mailsvc.auth.service import create_api_key
    from mailsvc.config import get_settings
    from mailsvc.kit.db import create_engine, create_sessionmaker

    engine = create_engine(get_settings().async_database_url, pool_size=1)
    try:
        async with create_sessionmaker(engine).begin() as session:
            created = await create_api_key(session, name="mailsvc dev", tenants=[DEV_TENANT])
    finally:
        await engine.dispose()
    return created.key


def spawn_worker(env: dict[str, str]) -> subprocess.Popen[bytes]:
    """The worker as a child process."""
    return subprocess.Popen([sys.executable, "-m", "mailsvc", "worker"], env=env)
