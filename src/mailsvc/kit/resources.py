"""The process-wide resources every domain may use, built by `mailsvc.runtime`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, TypeVar, cast

import redis.asyncio as aioredis
from arq.connections import ArqRedis
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from mailsvc.config import Settings
from mailsvc.kit.crypto import SecretBox
from mailsvc.kit.ratelimit import WindowLimiter
from mailsvc.kit.reads import ReadPool

T = TypeVar("T")


@dataclass(kw_only=True)
class Resources:
    """Connections, pools and keys shared by the requests and jobs of one process.

    Domain services take this (not the whole runtime), so a domain never depends on
    another domain's process-wide objects; `mailsvc.runtime.Runtime` extends it with
    those and is what the api and the worker actually build.
    """

    settings: Settings
    engine: AsyncEngine
    sessionmaker: async_sessionmaker[AsyncSession]
    # Autocommit sessions for work that only reads: no BEGIN and COMMIT round trips.
    read_sessionmaker: async_sessionmaker[AsyncSession]
    # Raw asyncpg connections for the hot reads (lists, gets, search pages).
    reads: ReadPool
    redis: aioredis.Redis
    arq: ArqRedis
    secrets: SecretBox
    # Requests per tenant (RATE_LIMIT_REQUESTS_PER_MINUTE / _PER_HOUR).
    rate_limiter: WindowLimiter
    # Sends per account (SEND_RATE_LIMIT_PER_MINUTE / _PER_HOUR).
    send_limiter: WindowLimiter
    # Process-wide services of domains above kit (the account logins, say), by type:
    # filled by the runtime, read with `component`.
    services: dict[type[Any], object] = field(default_factory=dict)

    def component(self, kind: type[T]) -> T:
        """This process's one `kind` (KeyError if the runtime built none)."""
        return cast(T, self.services[kind])
