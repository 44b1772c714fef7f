"""Base of every tenant-owned repository: tenancy by construction."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession


class TenantRepository:
    """A repository bound to one tenant; every statement it runs filters on it."""

    def __init__(self, session: AsyncSession, tenant_id: str) -> None:
        self.session = session
        self.tenant_id = tenant_id
