"""The resources one process shares between requests, built once in the lifespan."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import redis.asyncio as aioredis
from arq.connections import ArqRedis
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from mailsvc.auth.tokens import TokenCodec
from mailsvc.config import Settings
from mailsvc.kit.crypto import SecretBox
from mailsvc.kit.ratelimit import WindowLimiter

if TYPE_CHECKING:
    # The supervisor imports the account and sync packages, which import this module.
    from mailsvc.event.listener import ChangeListener
    from mailsvc.outbox.dispatch import OutboxDispatcher
    from mailsvc.sync.idle import IdleSupervisor


@dataclass
class AppState:
    settings: Settings
    engine: AsyncEngine
    sessionmaker: async_sessionmaker[AsyncSession]
    # Autocommit sessions for requests that only read: no BEGIN and COMMIT round trips.
    read_sessionmaker: async_sessionmaker[AsyncSession]
    redis: aioredis.Redis
    tokens: TokenCodec
    secrets: SecretBox
    rate_limiter: WindowLimiter
    # Sends per account (SEND_RATE_LIMIT_PER_MINUTE / _PER_HOUR).
    send_limiter: WindowLimiter
    arq: ArqRedis
    outbox: OutboxDispatcher
    # Wakes SSE streams when their tenant's changes commit.
    changes: ChangeListener
    # None when IDLE_ENABLED is false (and in the test suite's app).
    idle: IdleSupervisor | None = None


def build_secret_box(settings: Settings) -> SecretBox:
    current, old = settings.encryption_keys()
    return SecretBox(current, old)
