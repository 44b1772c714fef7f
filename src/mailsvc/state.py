"""The resources one process shares between requests, built once in the lifespan."""

from __future__ import annotations

from dataclasses import dataclass

import redis.asyncio as aioredis
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from mailsvc.auth.tokens import TokenCodec
from mailsvc.config import Settings
from mailsvc.kit.crypto import SecretBox
from mailsvc.kit.ratelimit import TenantRateLimiter


@dataclass
class AppState:
    settings: Settings
    engine: AsyncEngine
    sessionmaker: async_sessionmaker[AsyncSession]
    redis: aioredis.Redis
    tokens: TokenCodec
    secrets: SecretBox
    rate_limiter: TenantRateLimiter


def build_secret_box(settings: Settings) -> SecretBox:
    current, old = settings.encryption_keys()
    return SecretBox(current, old)
