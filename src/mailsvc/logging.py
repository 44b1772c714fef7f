"""Structured JSON logs with the request id on every line, secrets redacted.

Standard-library loggers (uvicorn, alembic, arq) go through the same renderer, so
one process writes one format.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

_SENSITIVE_KEYS = ("password", "secret", "token", "authorization", "api_key", "cookie")
REDACTED = "[redacted]"


def _redact(_: Any, __: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    for key in list(event_dict):
        if any(marker in key.lower() for marker in _SENSITIVE_KEYS):
            event_dict[key] = REDACTED
    return event_dict


class _ArqJobLinesAtDebug(logging.Filter):
    """Lowers arq's per-job lines to DEBUG, and drops them below the logger's level.

    arq logs every job start and finish ("0.01s ← cron:record_heartbeat ● ") and an
    hourly health line at INFO, so an idle worker's crons would fill the log at
    LOG_LEVEL=INFO; our jobs log what they did themselves. arq's start-up lines,
    warnings and errors (a job failed, expired, or not found) keep their level.
    """

    # Every per-job line of arq.worker starts with the job's duration ("%6.2fs ").
    _JOB_LINE_PREFIX = "%6.2fs "
    _HEALTH_LINE = "recording health: %s"

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno != logging.INFO or not isinstance(record.msg, str):
            return True
        if not (record.msg.startswith(self._JOB_LINE_PREFIX) or record.msg == self._HEALTH_LINE):
            return True
        record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        return logging.getLogger(record.name).isEnabledFor(logging.DEBUG)


_ARQ_JOB_FILTER = _ArqJobLinesAtDebug()


class _CurrentStderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever `sys.stderr` is at emit time.

    A handler holding the stderr of configuration time breaks when that stream is
    swapped and closed (test runners, daemonizing), e.g. for atexit log lines.
    """

    @property
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, _: Any) -> None:
        pass


def configure_logging(level: str = "INFO", *, json: bool = True) -> None:
    """Route structlog and stdlib logging to one JSON (or console) renderer on stderr."""
    shared: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _redact,
    ]
    renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer()
    )
    structlog.configure(
        # A line below the logger's level is dropped before any processor runs: the
        # access line of every request costs nothing at LOG_LEVEL=WARNING.
        processors=[
            structlog.stdlib.filter_by_level,
            *shared,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            renderer,
        ],
    )
    handler = _CurrentStderrHandler()
    handler.setFormatter(formatter)
    root = logging.getLogger()
    # Replace our own handler (configuring twice must not log twice), keep any other
    # (a test's capture, an embedding application's).
    root.handlers[:] = [
        *(h for h in root.handlers if not isinstance(h, _CurrentStderrHandler)),
        handler,
    ]
    root.setLevel(level)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "arq", "alembic"):
        logging.getLogger(name).handlers.clear()
        logging.getLogger(name).propagate = True
    # A logger's filters see only its own records, not its children's: on arq.worker
    # itself. One shared instance, so configuring twice adds it once.
    logging.getLogger("arq.worker").addFilter(_ARQ_JOB_FILTER)
    # aioimaplib logs every byte it sends and receives at DEBUG: mail content and
    # protocol traffic never belong in logs, whatever LOG_LEVEL says.
    logging.getLogger("aioimaplib").setLevel(max(logging.INFO, root.level))
    # Access lines are written by our own middleware, with the request id.
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)
