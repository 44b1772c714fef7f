"""`mailsvc dev`: the whole service on one machine with nothing but Python.

Takes the API port first (so a port in use fails at once, before anything starts),
then holds its data directory, starts embedded PostgreSQL and Redis for whichever of
`DATABASE_URL` / `REDIS_URL` is not set, migrates, runs a worker, prints a fresh API
key for tenant `dev` and serves the API on 127.0.0.1. Ctrl-C stops everything it
started.

While it runs, the data directory holds an exclusive lock (`dev.lock`) and the URLs
of its servers (`dev-servers.json`, owner-only): other `mailsvc` commands run with
the same `DATA_DIR` and no URLs of their own use those servers (`config.py`). The
lock ends with the process, however it ends, so stale URLs are never taken for live.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

from mailsvc.config import DEV_LOCK_FILE, DEV_SERVERS_FILE
from mailsvc.embedded import EmbeddedPostgres, EmbeddedRedis

DEV_TENANT = "dev"
DEV_HOST = "127.0.0.1"


class DevStartError(Exception):
    """`mailsvc dev` cannot start; the message says what to change."""


def _banner(lines: list[str]) -> None:
    sys.stdout.write("\n".join(["", *lines, ""]) + "\n")
    sys.stdout.flush()


def bind_api_socket(port: int) -> socket.socket:
    """A listening socket on DEV_HOST:`port`, handed to uvicorn later.

    Bound before any server starts, so a taken port fails in a second instead of
    after PostgreSQL, Redis and a printed key; and held from then on, so nothing can
    take it in between.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    # As uvicorn does: a port left in TIME_WAIT by a previous run is free to use.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((DEV_HOST, port))
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        reason = "in use" if exc.errno == errno.EADDRINUSE else exc.strerror or str(exc)
        raise DevStartError(
            f"port {port} on {DEV_HOST} is {reason}; choose another with --port"
        ) from exc
    return sock


@contextlib.contextmanager
def hold_data_dir(data_dir: Path) -> Iterator[None]:
    """Hold `data_dir` for this `mailsvc dev`; a second one on it is refused."""
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(data_dir / DEV_LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            raise DevStartError(
                f"another `mailsvc dev` is running with data directory {data_dir}; "
                "stop it, or choose another with --data-dir"
            ) from exc
        # Left by a run that was killed: those servers are gone.
        withdraw_servers(data_dir)
        yield
    finally:
        os.close(fd)


def announce_servers(data_dir: Path, *, database_url: str, redis_url: str) -> None:
    """Tell other `mailsvc` commands with this `DATA_DIR` where the servers are.

    Written whole under another name and renamed, so a reader never sees half a file;
    owner-only, since a URL may carry a password.
    """
    fd, temporary = tempfile.mkstemp(dir=data_dir, prefix=".dev-servers-")  # mode 0600
    try:
        with os.fdopen(fd, "w") as handle:
            json.dump({"database_url": database_url, "redis_url": redis_url}, handle)
        os.replace(temporary, data_dir / DEV_SERVERS_FILE)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)


def withdraw_servers(data_dir: Path) -> None:
    """Remove the announcement (before the servers stop, so no one picks them up)."""
    (data_dir / DEV_SERVERS_FILE).unlink(missing_ok=True)


def run_dev(*, data_dir: Path, port: int, with_worker: bool) -> None:
    """Run the service locally until Ctrl-C (see module docstring).

    Raises `DevStartError` before starting anything when the port or the data
    directory is taken.
    """
    data_dir = data_dir.resolve()
    # SIGTERM (a service manager, `kill`) stops everything as Ctrl-C does, instead of
    # ending this process with its servers still running.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    api_socket = bind_api_socket(port)
    try:
        with hold_data_dir(data_dir):
            _run_holding(data_dir=data_dir, api_socket=api_socket, with_worker=with_worker)
    finally:
        api_socket.close()


def _run_holding(*, data_dir: Path, api_socket: socket.socket, with_worker: bool) -> None:
    from mailsvc.config import get_settings, settings_from_environment

    started: list[EmbeddedPostgres | EmbeddedRedis] = []
    worker: subprocess.Popen[bytes] | None = None
    port = api_socket.getsockname()[1]
    try:
        os.environ.setdefault("ENVIRONMENT", "development")
        # The flag wins over DATA_DIR from the environment or .env: the secrets, the
        # lock and the announcement must all be in the directory this run holds.
        os.environ["DATA_DIR"] = str(data_dir)
        os.environ.setdefault("ALLOW_PRIVATE_HOSTS", "true")
        configured = settings_from_environment()  # as the children will see them
        if not configured.database_url:
            postgres = EmbeddedPostgres(data_dir / "postgres")
            started.append(postgres)
            os.environ["DATABASE_URL"] = postgres.start()
        if not configured.redis_url:
            redis = EmbeddedRedis(data_dir / "redis")
            started.append(redis)
            os.environ["REDIS_URL"] = redis.start()

        from mailsvc.ops.migrations import upgrade_to_head

        get_settings.cache_clear()
        settings = get_settings()
        upgrade_to_head(settings.async_database_url)
        announce_servers(
            data_dir,
            database_url=settings.async_database_url,
            redis_url=settings.required_redis_url,
        )
        api_key = asyncio.run(_create_dev_key())
        if with_worker:
            worker = spawn_worker(dict(os.environ))
        _banner(
            [
                f"mailsvc dev: http://{DEV_HOST}:{port}/docs",
                f"  API key (tenant {DEV_TENANT!r}): {api_key}",
                f"  curl -s -X POST http://{DEV_HOST}:{port}/auth/login "
                f"-H 'content-type: application/json' -d '{{\"api_key\": \"{api_key}\"}}'",
                f"  data: {data_dir}   Ctrl-C stops everything",
                "  other mailsvc commands with this DATA_DIR use these servers",
            ]
        )
        import uvicorn

        config = uvicorn.Config("mailsvc.app:app", host=DEV_HOST, port=port, log_config=None)
        # uvicorn shuts down on the signal, then raises it again for its caller.
        with contextlib.suppress(KeyboardInterrupt):
            uvicorn.Server(config).run(sockets=[api_socket])
    finally:
        withdraw_servers(data_dir)
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
