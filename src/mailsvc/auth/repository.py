"""SQL for API keys. Keys span tenants (an admin key grants several), so this is the
one repository that is not built with a tenant: it is looked up by key hash.

What a tenant may see of them is the keys granting it alone (`tenants = {tenant}`):
a key that also grants another tenant is not one tenant's to list or revoke. The
methods for a tenant take it as an argument and write that condition into each
statement, there being no `tenant_id` column for kit/repository.py's scope to add.
"""

from __future__ import annotations

import uuid

from sqlalchemy import ColumnElement, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from mailsvc.kit.db import utcnow
from mailsvc.kit.repository import cross_tenant
from mailsvc.models import ApiKey


def _grants_only(tenant_id: str) -> ColumnElement[bool]:
    """The key grants `tenant_id` and no other (tenants are stored sorted and unique)."""
    return ApiKey.tenants == [tenant_id]


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

    async def is_revoked(self, key_id: uuid.UUID) -> bool:
        """Whether the key is revoked, or does not exist (any more)."""
        revoked_at = await self._session.execute(
            select(ApiKey.revoked_at).where(ApiKey.id == key_id)
        )
        row = revoked_at.one_or_none()
        return row is None or row.revoked_at is not None

    async def list_granting_only(self, tenant_id: str) -> list[ApiKey]:
        """The keys granting `tenant_id` alone, revoked ones too, newest first."""
        statement = (
            select(ApiKey)
            .where(_grants_only(tenant_id))
            .order_by(ApiKey.created_at.desc(), ApiKey.id.desc())
        )
        return list(await self._session.scalars(statement))

    async def revoke_granting_only(self, key_id: uuid.UUID, tenant_id: str) -> ApiKey | None:
        """Revoke the key if it grants `tenant_id` alone (a revoked one keeps its time);
        None for any other id."""
        revoked: ApiKey | None = await self._session.scalar(
            update(ApiKey)
            .where(ApiKey.id == key_id, _grants_only(tenant_id))
            .values(revoked_at=func.coalesce(ApiKey.revoked_at, utcnow()))
            .returning(ApiKey)
        )
        return revoked

    async def list_all(self, *, granting: str | None = None) -> list[ApiKey]:
        """Every key, or those granting `granting` (alone or with others), newest first.
        For operators (`mailsvc apikey list`)."""
        statement = select(ApiKey).order_by(ApiKey.created_at.desc(), ApiKey.id.desc())
        if granting is not None:
            statement = statement.where(ApiKey.tenants.contains([granting]))
        return list(await self._session.scalars(statement))

    async def revoke(self, key_id: uuid.UUID) -> ApiKey | None:
        """Revoke any key, whatever it grants (`mailsvc apikey revoke`); None if none has
        this id. A revoked one keeps its time."""
        revoked: ApiKey | None = await self._session.scalar(
            update(ApiKey)
            .where(ApiKey.id == key_id)
            .values(revoked_at=func.coalesce(ApiKey.revoked_at, utcnow()))
            .returning(ApiKey)
        )
        return revoked
