"""Typed arq jobs: each job declares the context keys it reads as a TypedDict."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, cast

from arq.typing import WorkerCoroutine


def arq_job(coroutine: Callable[..., Awaitable[Any]]) -> WorkerCoroutine:
    """`coroutine` as arq registers it.

    arq types a job's context as a plain dict; ours take a TypedDict naming the keys
    they read, and `mailsvc.worker.settings.WorkerContext` is checked by mypy to
    provide every one of them.
    """
    return cast(WorkerCoroutine, coroutine)
