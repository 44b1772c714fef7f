"""`mailsvc serve`: uvicorn running the api in N processes, with a shutdown that drains.

With one process the server runs in the command's own process. With N > 1, uvicorn's
supervisor (`Multiprocess`) binds the socket, starts N server processes sharing it,
replaces one that dies, and on SIGTERM or SIGINT sends SIGTERM to each and waits for
them. Every server process is a whole api: its own lifespan, pools, change listener
and IDLE supervisor (which takes its share of the accounts through the leases).

A server process on SIGTERM (`DrainingServer.shutdown`):

    stop accepting; idle keep-alive connections close
      └─► drain (kit/draining.py): SSE streams end with their resume point and a
          retry hint; the IDLE supervisor releases its leases and tells the others
            └─► requests in flight finish (for `drain_seconds` at most; the rest
                are cancelled)
                  └─► lifespan shutdown (the runtime closes) ─► exit

All of it within SHUTDOWN_GRACE_SECONDS of the SIGTERM: a server process still there at
its deadline exits anyway (code 1), and the supervisor kills a worker it is still
waiting for at its own. Give the orchestrator's stop timeout a few seconds more
(compose `stop_grace_period`, Kubernetes `terminationGracePeriodSeconds`).
"""

from __future__ import annotations

import math
import os
import signal
import socket
import sys
import threading
import time

import structlog
import uvicorn
from uvicorn.config import STARTUP_FAILURE
from uvicorn.supervisors import ChangeReload, multiprocess

from mailsvc.config import Settings, get_settings
from mailsvc.kit.draining import drain_process
from mailsvc.kit.processes import die_with_parent
from mailsvc.logging import configure_logging
from mailsvc.ops.capacity import api_workers
from mailsvc.ops.pauses import freeze_startup_heap

log = structlog.get_logger("mailsvc.serve")

APP = "mailsvc.app:app"

# The supervisor looks at its signals every 0.5 s and a server process at its exit
# flag every 0.1 s: this much of the grace period may pass before a process starts
# shutting down.
NOTICE_SECONDS = 1.0
# What the runtime's teardown after the drain gets (IDLE connections, pools, Redis):
# a quarter of the grace period, at most this.
MAX_TEARDOWN_SECONDS = 5.0


def drain_seconds(grace_seconds: float) -> int:
    """How long a server process waits for requests in flight (uvicorn's
    `timeout_graceful_shutdown`) within a grace period of `grace_seconds`."""
    teardown = min(MAX_TEARDOWN_SECONDS, grace_seconds / 4)
    return max(1, math.floor(grace_seconds - NOTICE_SECONDS - teardown))


class ServeConfig(uvicorn.Config):
    """uvicorn's configuration of `mailsvc serve`, with the grace period every server
    process keeps to (it travels with the configuration into each worker)."""

    def __init__(
        self, *, host: str, port: int, workers: int, reload: bool, grace_seconds: float
    ) -> None:
        super().__init__(
            APP,
            host=host,
            port=port,
            workers=workers,
            reload=reload,
            log_config=None,  # our JSON logging, configured by create_app
            proxy_headers=True,
            timeout_graceful_shutdown=drain_seconds(grace_seconds),
        )
        self.grace_seconds = grace_seconds


class DrainingServer(uvicorn.Server):
    """uvicorn's server, which drains the process when it stops accepting and exits
    by the end of the grace period whatever happens."""

    def __init__(self, config: ServeConfig) -> None:
        super().__init__(config)
        self._grace_seconds = config.grace_seconds

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        # The app and its runtime are up: what exists now lives as long as the process.
        freeze_startup_heap()

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        _exit_after(self._grace_seconds - NOTICE_SECONDS)
        # Before uvicorn waits for the connections: an SSE stream would hold that wait
        # for the whole drain time, and be cut off at its end.
        drain_process()
        await super().shutdown(sockets)


def _exit_after(seconds: float) -> None:
    """End this process `seconds` from now if it is still running then."""

    def give_up() -> None:
        log.error("serve.grace_period_exceeded", pid=os.getpid(), seconds=seconds)
        os._exit(1)

    timer = threading.Timer(seconds, give_up)
    timer.daemon = True  # never keeps a process that finished in time alive
    timer.start()


class _WorkerProcess(multiprocess.Process):
    """A worker process of uvicorn's supervisor that runs `DrainingServer`, and drains
    and exits should the supervisor die (SIGKILL, the OOM killer): an orphan would go
    on serving the shared port and watching its IDLE accounts unsupervised."""

    def __init__(self, config: uvicorn.Config, sockets: list[socket.socket]) -> None:
        self._supervisor_pid = os.getpid()  # before the instance is pickled for the child
        super().__init__(config, sockets)

    def target(self, sockets: list[socket.socket] | None = None) -> None:
        die_with_parent(self._supervisor_pid, signal_number=signal.SIGTERM)
        super().target(sockets)

    @property
    def server(self) -> uvicorn.Server:
        if self._server is None:
            assert isinstance(self.config, ServeConfig)
            self._server = DrainingServer(self.config)
        return self._server


class _Supervisor(multiprocess.Multiprocess):
    """uvicorn's supervisor with `_WorkerProcess` workers, which stops waiting for
    them at the end of the grace period."""

    def __init__(self, config: ServeConfig, sockets: list[socket.socket]) -> None:
        super().__init__(config, sockets)
        self._grace_seconds = config.grace_seconds
        self._stopping_since = time.monotonic()

    def run(self) -> None:
        # uvicorn's supervisor builds each worker (at start, on restart, on SIGTTIN)
        # with its module's `Process`. While ours runs, that is `_WorkerProcess`; the
        # workers are spawned with their instance pickled, so they run ours too.
        uvicorns = multiprocess.Process
        multiprocess.Process = _WorkerProcess  # type: ignore[misc]
        try:
            super().run()
        finally:
            multiprocess.Process = uvicorns  # type: ignore[misc]

    def terminate_all(self) -> None:
        self._stopping_since = time.monotonic()
        super().terminate_all()

    def join_all(self) -> None:
        # The SIGTERM arrived up to one signal poll (0.5 s) before terminate_all.
        deadline = self._stopping_since + self._grace_seconds - 0.5
        for worker in self.processes:
            worker.process.join(max(0.0, deadline - time.monotonic()))
        for worker in self.processes:
            if worker.process.is_alive():
                log.error("serve.worker_killed", pid=worker.pid)
                worker.kill()
                worker.process.join()


def serve(settings: Settings, *, host: str, port: int, workers: int | None, reload: bool) -> None:
    """Serve the api until SIGTERM or SIGINT.

    `workers` None or 0: API_WORKERS (0: one per core); `reload` runs one process,
    restarted on code changes.
    """
    # This process's own lines (the supervisor's, uvicorn's) as JSON like the rest.
    configure_logging(settings.log_level)
    count = 1 if reload else (workers or api_workers(settings))
    # Each server process sizes its database pools by the number of api processes
    # (ops/capacity.py), so it must read the number that runs: workers are spawned
    # with this environment, and this process reads its settings again.
    os.environ["API_WORKERS"] = str(count)
    get_settings.cache_clear()
    config = ServeConfig(
        host=host,
        port=port,
        workers=count,
        reload=reload,
        grace_seconds=settings.shutdown_grace_seconds,
    )
    server = DrainingServer(config)
    try:
        if config.should_reload:
            ChangeReload(config, target=server.run, sockets=[config.bind_socket()]).run()
        elif count > 1:
            _Supervisor(config, sockets=[config.bind_socket()]).run()
        else:
            server.run()
    except KeyboardInterrupt:
        pass
    if count == 1 and not reload and not server.started:
        sys.exit(STARTUP_FAILURE)
