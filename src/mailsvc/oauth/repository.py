"""SQL for OAuth2 apps and for the token columns of OAuth2 accounts."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from mailsvc.kit.repository import TenantRepository, cross_tenant
from mailsvc.models import Account, OAuthApp


class OAuthAppRepository(TenantRepository):
    async def get(self, app_id: uuid.UUID) -> OAuthApp | None:
        found: OAuthApp | None = await self.session.scalar(
            self.scoped.select(OAuthApp).where(OAuthApp.id == app_id)
        )
        return found

    async def page(self, *, after: uuid.UUID | None, limit: int) -> Sequence[OAuthApp]:
        """Up to `limit` apps in id (creation) order, after the given id."""
        statement = self.scoped.select(OAuthApp)
        if after is not None:
            statement = statement.where(OAuthApp.id > after)
        result = await self.session.scalars(statement.order_by(OAuthApp.id).limit(limit))
        return result.all()

    async def add(self, app: OAuthApp) -> OAuthApp:
        return await self.scoped.add(app)

    async def delete(self, app_id: uuid.UUID) -> None:
        await self.session.execute(self.scoped.delete(OAuthApp).where(OAuthApp.id == app_id))

    async def all_in_tenant(self) -> Sequence[OAuthApp]:
        result = await self.session.scalars(self.scoped.select(OAuthApp).order_by(OAuthApp.id))
        return result.all()

    async def accounts_using(self, app_id: uuid.UUID) -> int:
        statement = self.scoped.select(func.count(), from_=Account)
        count: int | None = await self.session.scalar(
            statement.where(Account.oauth_app_id == app_id)
        )
        return count or 0


class OAuthAccountRepository(TenantRepository):
    """The rows of OAuth2 accounts, as the token refresher reads and updates them."""

    async def get(self, account_id: uuid.UUID, *, for_update: bool = False) -> Account | None:
        statement = self.scoped.select(Account).where(Account.id == account_id)
        if for_update:
            statement = statement.with_for_update()
        found: Account | None = await self.session.scalar(statement)
        return found


@cross_tenant(reason="key rotation walks every tenant")
async def tenants_with_oauth_apps(session: AsyncSession) -> list[str]:
    """Operator use only (key rotation walks every tenant); never behind an endpoint."""
    result = await session.scalars(select(OAuthApp.tenant_id).distinct())
    return sorted(result.all())
