"""SQL for API keys. Keys span tenants (an admin key grants several), so this is the
one repository that is not built with a tenant: it is looked up by key hash."""

from __future__ import annotations

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from mailsvc.kit.db import utcnow
from mailsvc.kit.repository import cross_tenant
from mailsvc.models import ApiKey


@cross_tenant(reason="a key is found by its hash before any tenant is known, and may grant several")
class ApiKeyRepository:
    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def add(self, api_key: ApiKey) -> ApiKey:
        self._session.add(api_key)
        await self._session.flush()
        return api_key

    async def find_active_by_hash(self, key_hash: str) -> ApiKey | None:
        statement = select(ApiKey).where(ApiKey.key_hash == key_hash, ApiKey.revoked_at.is_(None))
        found: ApiKey | None = await self._session.scalar(statement)
        return found

    async def mark_used(self, api_key: ApiKey) -> None:
        await self._session.execute(
            update(ApiKey).where(ApiKey.id == api_key.id).values(last_used_at=utcnow())
        )
