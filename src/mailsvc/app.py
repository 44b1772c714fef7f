"""The ASGI application.

`create_app()` builds it from settings; the lifespan opens the database pool, Redis
and the other shared resources and closes them on shutdown. `mailsvc.app:app` (for
`uvicorn mailsvc.app:app --reload --port 5000`) is built on first access, so importing
this module never needs settings.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import structlog
from fastapi import FastAPI

from mailsvc import __version__
from mailsvc.api import include_routers
from mailsvc.auth.tokens import TokenCodec
from mailsvc.config import Settings, get_settings
from mailsvc.errors import install_error_handlers
from mailsvc.kit.db import create_engine, create_sessionmaker
from mailsvc.kit.ratelimit import TenantRateLimiter
from mailsvc.kit.redis import create_redis
from mailsvc.logging import configure_logging
from mailsvc.middleware import RequestContextMiddleware
from mailsvc.state import AppState, build_secret_box

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
]


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the application; `settings` defaults to the environment's."""
    settings = settings or get_settings()
    configure_logging(settings.log_level)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = create_engine(settings.async_database_url, pool_size=settings.database_pool_size)
        redis = create_redis(settings.required_redis_url)
        app.state.mailsvc = AppState(
            settings=settings,
            engine=engine,
            sessionmaker=create_sessionmaker(engine),
            redis=redis,
            tokens=TokenCodec(settings),
            secrets=build_secret_box(settings),
            rate_limiter=TenantRateLimiter(
                redis,
                redis_url=settings.required_redis_url,
                per_minute=settings.rate_limit_requests_per_minute,
                per_hour=settings.rate_limit_requests_per_hour,
            ),
        )
        log.info("app.started", environment=settings.environment.value)
        try:
            yield
        finally:
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
