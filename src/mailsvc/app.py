"""The ASGI application.

`create_app()` builds it from settings; the lifespan opens the process's runtime
(`mailsvc.runtime`: database pool, Redis, the IDLE supervisor, ...) and closes it on
shutdown. When `mailsvc serve` starts draining the process (kit/draining.py), SSE
streams end at once and the IDLE supervisor hands its accounts over, while the
requests in flight finish. `mailsvc.app:app` (for `uvicorn mailsvc.app:app --reload --port 5000`) is
built on first access, so importing this module never needs settings.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import structlog
from fastapi import FastAPI

from mailsvc import __version__
from mailsvc.api import include_routers
from mailsvc.config import Settings, get_settings
from mailsvc.console.router import install_console
from mailsvc.errors import install_error_handlers, install_problem_schemas
from mailsvc.kit.draining import Drain, draining
from mailsvc.logging import configure_logging
from mailsvc.middleware import RequestContextMiddleware
from mailsvc.ops.docs import router as docs_router
from mailsvc.ops.pauses import watch_pauses
from mailsvc.runtime import Role, open_runtime
from mailsvc.sync.idle import IdleSupervisor

log = structlog.get_logger("mailsvc.app")

DESCRIPTION = """\
Self-hosted, multi-tenant email API. Register IMAP/SMTP accounts; mailsvc mirrors
each mailbox into PostgreSQL, keeps it current with IMAP IDLE, and serves it here.

Authenticate with `POST /auth/login` (an API key for a bearer token), then send
`Authorization: Bearer <token>` and, for tokens granting several tenants,
`X-Tenant-ID`. Errors are `application/problem+json` with a stable `code`.
"""

TAGS = [
    {"name": "operations", "description": "Liveness, readiness and metrics."},
    {
        "name": "auth",
        "description": "Exchange API keys for access tokens; a tenant's own API keys.",
    },
    {"name": "accounts", "description": "Mailbox accounts (IMAP + SMTP)."},
    {"name": "sync", "description": "Mirroring mailboxes: trigger a sync, follow progress."},
    {"name": "messages", "description": "Read, search, flag, move and delete synced mail."},
    {"name": "threads", "description": "Conversations, newest activity first."},
    {"name": "search", "description": "Full-text search with Gmail-style operators."},
    {
        "name": "events",
        "description": "What changed: a change feed with cursors, and Server-Sent Events.",
    },
    {
        "name": "webhooks",
        "description": "Signed POSTs of every event to your endpoints, in order per account.",
    },
    {"name": "drafts", "description": "Messages being composed, with their attachments."},
    {
        "name": "sending",
        "description": "The durable outbox: send at once or later, idempotently, with "
        "retries; follow each message until it is sent.",
    },
]


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the application; `settings` defaults to the environment's."""
    settings = settings or get_settings()
    configure_logging(settings.log_level)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with open_runtime(settings, role=Role.API) as runtime, watch_pauses():
            with draining() as drain:
                app.state.mailsvc = runtime
                app.state.components = {**runtime.components(), Drain: drain}
                handover = asyncio.create_task(
                    _hand_over_accounts(drain, runtime.idle), name="idle-handover"
                )
                log.info("app.started", environment=settings.environment.value)
                try:
                    yield
                finally:
                    # A handover under way finishes releasing; one not begun never will.
                    if not drain.begun:
                        handover.cancel()
                    await asyncio.gather(handover, return_exceptions=True)
        log.info("app.stopped")

    app = FastAPI(
        title="mailsvc",
        version=__version__,
        description=DESCRIPTION,
        openapi_tags=TAGS,
        lifespan=lifespan,
        # ops/docs.py serves both pages with their assets; FastAPI's load them from a CDN.
        docs_url=None,
        redoc_url=None,
    )
    install_error_handlers(app)
    install_problem_schemas(app)
    app.add_middleware(RequestContextMiddleware, max_body_bytes=settings.max_request_body_bytes)
    include_routers(app)
    app.include_router(docs_router)
    if settings.console_enabled:
        install_console(app)
    return app


async def _hand_over_accounts(drain: Drain, idle: IdleSupervisor | None) -> None:
    """Once the process drains, stop watching its IDLE accounts and release their
    leases, so the processes that stay take them over while this one still finishes
    its requests (and even if it is killed before it gets to exit)."""
    await drain.wait()
    if idle is not None:
        await idle.stop()


def __getattr__(name: str) -> FastAPI:
    # PEP 562: `mailsvc.app:app` is built when uvicorn asks for it, not at import.
    if name == "app":
        application = create_app()
        globals()["app"] = application
        return application
    raise AttributeError(name)
