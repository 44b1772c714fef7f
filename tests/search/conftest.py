"""Sessions on the run's database for the tests that write rows themselves.

The search tests store accounts straight into the run's database
(`tests.fixtures.mail.parked_account`), whose secrets are placeholders, not sealed
values. They are removed (with their mailboxes, messages and queue rows) when each
module ends, so that later tests that open every account's secrets, such as
`mailsvc keys rotate`, see only real ones."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine

from mailsvc.config import Settings
from tests.fixtures.mail import PARKED_SECRET


@pytest.fixture
async def sessionmaker(database_url: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    """Sessions on the run's database; each test keeps to tenants of its own."""
    engine = create_async_engine(database_url)
    yield async_sessionmaker(engine, expire_on_commit=False)
    await engine.dispose()


@pytest.fixture(scope="module", autouse=True)
async def _remove_parked_accounts(settings: Settings) -> AsyncIterator[None]:
    yield
    engine = create_async_engine(settings.async_database_url)
    try:
        async with engine.begin() as connection:
            await connection.execute(
                text("DELETE FROM accounts WHERE imap_secret = :parked"), {"parked": PARKED_SECRET}
            )
    finally:
        await engine.dispose()
