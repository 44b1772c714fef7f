"""The tenant scope against PostgreSQL: one tenant's repository never reads, changes
or removes another tenant's rows, and what it inserts is its own."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
from sqlalchemy import func
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine
from sqlalchemy.pool import NullPool

from mailsvc.account.repository import AccountRepository
from mailsvc.kit.repository import TenantRepository, TenantScope
from mailsvc.mirror.repository import MailboxRepository
from mailsvc.models import Account, Mailbox, Webhook
from tests.fixtures.mail import parked_account


@dataclass(frozen=True)
class Tenant:
    id: str
    account_id: uuid.UUID
    mailbox_id: uuid.UUID


@pytest.fixture
async def session(database_url: str) -> AsyncIterator[AsyncSession]:
    """A session in a transaction that is rolled back, leaving the shared database as it was."""
    engine = create_async_engine(database_url, poolclass=NullPool)
    try:
        async with engine.connect() as connection:
            transaction = await connection.begin()
            yield AsyncSession(connection, expire_on_commit=False)
            await transaction.rollback()
    finally:
        await engine.dispose()


async def _tenant(session: AsyncSession) -> Tenant:
    """A tenant with one account and its INBOX, stored through the repositories."""
    tenant_id = f"scope-{uuid.uuid4().hex[:12]}"
    account = await AccountRepository(session, tenant_id).add(parked_account())
    inbox = await MailboxRepository(session, tenant_id).add(
        Mailbox(account_id=account.id, name="INBOX")
    )
    return Tenant(tenant_id, account.id, inbox.id)


@pytest.fixture
async def tenants(session: AsyncSession) -> tuple[Tenant, Tenant]:
    return await _tenant(session), await _tenant(session)


def _scope(session: AsyncSession, tenant: Tenant) -> TenantScope:
    return TenantRepository(session, tenant.id).scoped


async def test_select_reads_the_tenants_rows_only(
    session: AsyncSession, tenants: tuple[Tenant, Tenant]
) -> None:
    a, b = tenants
    scoped = _scope(session, a)

    assert list(await session.scalars(scoped.select(Account.id))) == [a.account_id]
    found = await session.scalar(scoped.select(Account).where(Account.id == b.account_id))
    assert found is None
    count = await session.scalar(scoped.select(func.count(), from_=Mailbox))
    assert count == 1
    # Both tenants have an INBOX and the ON clause does not relate the two tables: each
    # table read is filtered on its own, so B's INBOX does not pair with A's account.
    pairs = await session.execute(
        scoped.select(Account.id, Mailbox.id).join(Mailbox, Mailbox.name == "INBOX")
    )
    assert pairs.all() == [(a.account_id, a.mailbox_id)]


async def test_update_changes_the_tenants_rows_only(
    session: AsyncSession, tenants: tuple[Tenant, Tenant]
) -> None:
    a, b = tenants
    scoped = _scope(session, a)

    # No WHERE clause of its own: "every account" is every account of tenant A.
    everything = await session.execute(scoped.update(Account).values(display_name="Renamed"))
    aimed_at_b = await session.execute(
        scoped.update(Account).where(Account.id == b.account_id).values(display_name="Stolen")
    )

    assert everything.rowcount == 1  # type: ignore[attr-defined]
    assert aimed_at_b.rowcount == 0  # type: ignore[attr-defined]
    assert await session.scalar(scoped.select(Account.display_name)) == "Renamed"
    assert await session.scalar(_scope(session, b).select(Account.display_name)) is None


async def test_delete_removes_the_tenants_rows_only(
    session: AsyncSession, tenants: tuple[Tenant, Tenant]
) -> None:
    a, b = tenants
    scoped = _scope(session, a)

    aimed_at_b = await session.execute(scoped.delete(Mailbox).where(Mailbox.id == b.mailbox_id))
    everything = await session.execute(scoped.delete(Mailbox))

    assert aimed_at_b.rowcount == 0  # type: ignore[attr-defined]
    assert everything.rowcount == 1  # type: ignore[attr-defined]
    left = await session.scalars(_scope(session, b).select(Mailbox.id))
    assert left.all() == [b.mailbox_id]


async def test_inserts_belong_to_the_tenant_whatever_the_row_says(
    session: AsyncSession, tenants: tuple[Tenant, Tenant]
) -> None:
    a, b = tenants
    scoped = _scope(session, a)
    row = {"url": "https://example.com/hook", "secret": "ciphertext", "tenant_id": b.id}

    await session.execute(scoped.insert(Webhook, row))
    await session.execute(scoped.insert(Webhook, [row, row]))
    await scoped.insert_many(Webhook, [row, row])
    await scoped.add(Webhook(**row))

    assert await session.scalar(scoped.select(func.count(), from_=Webhook)) == 6
    assert await session.scalar(_scope(session, b).select(func.count(), from_=Webhook)) == 0


async def test_repositories_do_not_see_across_tenants(
    session: AsyncSession, tenants: tuple[Tenant, Tenant]
) -> None:
    a, b = tenants
    accounts = AccountRepository(session, a.id)

    assert await accounts.get(b.account_id) is None
    assert await MailboxRepository(session, a.id).lock(b.mailbox_id) is None
    await accounts.delete(b.account_id)
    assert await AccountRepository(session, b.id).get(b.account_id) is not None


async def test_a_select_that_reads_no_tenant_table_is_refused(session: AsyncSession) -> None:
    # Scoping it would silently do nothing; the table has to be named.
    with pytest.raises(ValueError, match="no tenant table"):
        TenantScope(session, "any").select(func.count())
