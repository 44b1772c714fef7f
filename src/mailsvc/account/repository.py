"""SQL for accounts."""

from __future__ import annotations

import uuid
from collections.abc import Collection, Sequence
from typing import Any, NamedTuple

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from mailsvc.kit.repository import TenantRepository, cross_tenant
from mailsvc.models import Account


class AccountRepository(TenantRepository):
    async def get(self, account_id: uuid.UUID, *, for_update: bool = False) -> Account | None:
        statement = self.scoped.select(Account).where(Account.id == account_id)
        if for_update:
            statement = statement.with_for_update()
        found: Account | None = await self.session.scalar(statement)
        return found

    async def by_email(self, email: str, *, for_update: bool = False) -> Account | None:
        statement = self.scoped.select(Account).where(Account.email == email)
        if for_update:
            statement = statement.with_for_update()
        found: Account | None = await self.session.scalar(statement)
        return found

    async def email_taken(self, email: str, *, except_id: uuid.UUID | None = None) -> bool:
        statement = self.scoped.select(Account.id).where(Account.email == email)
        if except_id is not None:
            statement = statement.where(Account.id != except_id)
        return (await self.session.scalar(statement.limit(1))) is not None

    async def page(self, *, after: uuid.UUID | None, limit: int) -> Sequence[Account]:
        """Up to `limit` accounts in id (creation) order, after the given id."""
        statement = self.scoped.select(Account)
        if after is not None:
            statement = statement.where(Account.id > after)
        result = await self.session.scalars(statement.order_by(Account.id).limit(limit))
        return result.all()

    async def add(self, account: Account) -> Account:
        return await self.scoped.add(account)

    async def delete(self, account_id: uuid.UUID) -> None:
        """Delete the account; foreign keys cascade to everything it owns."""
        await self.session.execute(self.scoped.delete(Account).where(Account.id == account_id))

    async def all_in_tenant(self) -> Sequence[Account]:
        result = await self.session.scalars(self.scoped.select(Account).order_by(Account.id))
        return result.all()


@cross_tenant(reason="key rotation walks every tenant")
async def tenants_with_accounts(session: AsyncSession) -> list[str]:
    """Operator use only (key rotation walks every tenant); never behind an endpoint."""
    result = await session.scalars(select(Account.tenant_id).distinct())
    return sorted(result.all())


class AccountToWatch(NamedTuple):
    """What the IDLE supervisor needs to decide about an account (no credentials)."""

    tenant_id: str
    id: uuid.UUID
    state: str
    credentials_version: int
    sync_options: dict[str, Any]


# An account parked in one of these states waits for a person (new credentials,
# re-enabling) before anything connects to it again.
UNWATCHED_STATES = ("disabled", "auth_error")


@cross_tenant(reason="the IDLE supervisor and the periodic resync serve every tenant")
async def accounts_to_watch(
    session: AsyncSession, *, tenant_ids: Collection[str] | None = None
) -> list[AccountToWatch]:
    """Operator use only (the IDLE supervisor spans every tenant); never behind an endpoint.

    Every account that should have a live IMAP connection, of all tenants, or of
    `tenant_ids` only (a supervisor limited to some tenants).
    """
    statement = select(
        Account.tenant_id,
        Account.id,
        Account.state,
        Account.credentials_version,
        Account.sync_options,
    ).where(Account.state.not_in(UNWATCHED_STATES))
    if tenant_ids is not None:
        statement = statement.where(Account.tenant_id.in_(list(tenant_ids)))
    rows = await session.execute(statement.order_by(Account.tenant_id, Account.id))
    return [AccountToWatch(*row) for row in rows]
