"""Process pools whose workers die with the process that owns them.

A pool's workers block reading their task queue, and each holds a write end of that
queue itself, so a SIGKILLed owner (an operator, the OOM killer, a test) never closes
it for them: without help they would wait forever. On Linux each worker asks the
kernel for a parent-death signal instead; elsewhere this is a no-op.
"""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import signal
import sys
from concurrent.futures import ProcessPoolExecutor

# From <linux/prctl.h>.
_PR_SET_PDEATHSIG = 1


def die_with_parent(parent_pid: int, *, signal_number: int = signal.SIGKILL) -> None:
    """Have the kernel send `signal_number` to this process when its parent,
    `parent_pid`, dies.

    Runs first thing in a child. The parent may have died before the request was made,
    in which case the child is already an orphan and exits at once. SIGKILL by default:
    a pool worker has nothing to flush, and a library's handler must not be able to
    keep an orphan alive; a process that must shut down cleanly asks for SIGTERM.
    """
    if sys.platform != "linux":
        return
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_PDEATHSIG, signal_number, 0, 0, 0) != 0:
        error = ctypes.get_errno()
        raise OSError(error, os.strerror(error))
    if os.getppid() != parent_pid:
        os._exit(1)


def orphan_free_pool(*, max_workers: int) -> ProcessPoolExecutor:
    """A process pool whose workers are killed when this process dies, however it dies.

    Workers are started with `spawn`: forking a process that runs an event loop,
    threads and open sockets is not safe, and a spawned worker is a direct child of
    this process (with `forkserver` it would be the fork server's, and the parent
    check would fail). The kernel signals a child when the *thread* that started it
    ends, and the pool starts workers from the thread calling `submit`: submit only
    from a thread that lives as long as the pool (the event loop's, through
    `run_in_executor`).
    """
    return ProcessPoolExecutor(
        max_workers=max_workers,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=die_with_parent,
        initargs=(os.getpid(),),
    )
