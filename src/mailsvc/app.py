"""The ASGI application.

`create_app()` builds it from settings; the lifespan opens the database pool, Redis
and the other shared resources and closes them on shutdown. `mailsvc.app:app` (for
`uvicorn mailsvc.app:app --reload --port 5000`) is built on first access, so importing
this module never needs settings.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import structlog
from arq.connections import ArqRedis
from fastapi import FastAPI

from mailsvc import __version__
from mailsvc.api import include_routers
from mailsvc.auth.tokens import TokenCodec
from mailsvc.config import Settings, get_settings
from mailsvc.errors import install_error_handlers
from mailsvc.event.listener import ChangeListener, listen_dsn
from mailsvc.kit.db import create_engine, create_sessionmaker
from mailsvc.kit.mailserver import tls_context
from mailsvc.kit.ratelimit import account_send_limiter, tenant_request_limiter
from mailsvc.kit.redis import create_redis
from mailsvc.logging import configure_logging
from mailsvc.middleware import RequestContextMiddleware
from mailsvc.outbox.dispatch import OutboxDispatcher
from mailsvc.outbox.sender import OutboxSender
from mailsvc.state import AppState, build_secret_box
from mailsvc.sync.engine import SyncEngine
from mailsvc.sync.idle import IdleSupervisor
from mailsvc.sync.parser import ParserPool

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
    {"name": "auth", "description": "Exchange API keys for access tokens."},
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
        engine = create_engine(settings.async_database_url, pool_size=settings.database_pool_size)
        redis = create_redis(settings.required_redis_url)
        # On our pool, not arq's create_pool: that one blocks startup while Redis is
        # down, and a service must come up and say so on /ready instead.
        arq = ArqRedis(connection_pool=redis.connection_pool)
        sessionmaker = create_sessionmaker(engine)
        secret_box = build_secret_box(settings)
        state = AppState(
            settings=settings,
            engine=engine,
            sessionmaker=sessionmaker,
            read_sessionmaker=create_sessionmaker(
                engine.execution_options(isolation_level="AUTOCOMMIT")
            ),
            redis=redis,
            tokens=TokenCodec(settings),
            secrets=secret_box,
            rate_limiter=tenant_request_limiter(
                redis,
                per_minute=settings.rate_limit_requests_per_minute,
                per_hour=settings.rate_limit_requests_per_hour,
            ),
            send_limiter=account_send_limiter(
                redis,
                per_minute=settings.send_rate_limit_per_minute,
                per_hour=settings.send_rate_limit_per_hour,
            ),
            arq=arq,
            changes=ChangeListener(listen_dsn(settings.async_database_url)),
            outbox=OutboxDispatcher(
                OutboxSender(
                    sessionmaker=sessionmaker, secrets=secret_box, settings=settings, arq=arq
                )
            ),
        )
        app.state.mailsvc = state
        state.changes.start()
        # Built once and cached; building reads the system CA bundle from disk, which
        # the first account check, download or mail change would otherwise do on the
        # event loop.
        await asyncio.to_thread(tls_context, settings.mail_tls_ca_file)
        parser: ParserPool | None = None
        if settings.idle_enabled:
            parser = ParserPool(processes=settings.sync_parse_processes or None)
            state.idle = IdleSupervisor(
                sessionmaker=state.sessionmaker,
                redis=redis,
                engine=SyncEngine(
                    sessionmaker=state.sessionmaker,
                    secrets=state.secrets,
                    settings=settings,
                    parser=parser,
                ),
                secrets=state.secrets,
                settings=settings,
                # Unique per process, also across `--workers N` and a restart reusing a pid.
                owner_id=f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}",
            )
            state.idle.start()
        log.info("app.started", environment=settings.environment.value)
        try:
            yield
        finally:
            await state.outbox.close()
            await state.changes.stop()
            if state.idle is not None:
                await state.idle.stop()
            if parser is not None:
                parser.close()
            await redis.aclose()
            await engine.dispose()
            log.info("app.stopped")

    app = FastAPI(
        title="mailsvc",
        version=__version__,
        description=DESCRIPTION,
        openapi_tags=TAGS,
        lifespan=lifespan,
    )
    install_error_handlers(app)
    app.add_middleware(RequestContextMiddleware, max_body_bytes=settings.max_request_body_bytes)
    include_routers(app)
    return app


def __getattr__(name: str) -> FastAPI:
    # PEP 562: `mailsvc.app:app` is built when uvicorn asks for it, not at import.
    if name == "app":
        application = create_app()
        globals()["app"] = application
        return application
    raise AttributeError(name)
