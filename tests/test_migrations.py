"""The alembic migrations against the ORM models, on a real PostgreSQL."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pprint import pformat
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, create_async_engine
from sqlalchemy.pool import NullPool

from mailsvc.models import (
    Account,
    Attachment,
    Base,
    Draft,
    Mailbox,
    Message,
    OutboxMessage,
    Thread,
)
from mailsvc.ops.migrations import alembic_config, head_revision
from tests.fixtures.databases import create_database, drop_database


def _revision_and_diff(connection: Connection) -> tuple[str | None, list[Any]]:
    """The database's revision and how its schema differs from the models."""
    context = MigrationContext.configure(
        connection, opts={"compare_type": True, "compare_server_default": True}
    )
    return context.get_current_revision(), compare_metadata(context, Base.metadata)


async def _table_names(database_url: str) -> set[str]:
    engine = create_async_engine(database_url, poolclass=NullPool)
    try:
        async with engine.connect() as connection:
            names: list[str] = await connection.run_sync(
                lambda sync: sa.inspect(sync).get_table_names()
            )
    finally:
        await engine.dispose()
    return set(names)


@pytest.fixture
async def scratch_database_url(postgres_server_url: str) -> AsyncIterator[str]:
    """An empty database of its own, so the shared one stays at head."""
    url, name = await create_database(
        postgres_server_url, prefix="mailsvc_migrations", migrate=False
    )
    yield url
    await drop_database(postgres_server_url, name)


async def test_head_matches_the_models(database_url: str) -> None:
    engine = create_async_engine(database_url, poolclass=NullPool)
    try:
        async with engine.connect() as connection:
            revision, diff = await connection.run_sync(_revision_and_diff)
    finally:
        await engine.dispose()
    assert revision == head_revision()
    assert diff == [], "models and migrations differ:\n" + pformat(diff)


async def test_downgrade_to_base_and_upgrade_again(scratch_database_url: str) -> None:
    config = alembic_config(scratch_database_url)
    await asyncio.to_thread(command.upgrade, config, "head")

    await asyncio.to_thread(command.downgrade, config, "base")
    assert await _table_names(scratch_database_url) == {"alembic_version"}

    await asyncio.to_thread(command.upgrade, config, "head")
    assert await _table_names(scratch_database_url) == {"alembic_version", *Base.metadata.tables}


# The referential actions below are declared in the migration, so they are checked here.


async def _insert(connection: AsyncConnection, model: type[Base], **values: Any) -> uuid.UUID:
    row_id: uuid.UUID = await connection.scalar(
        sa.insert(model).values(**values).returning(model.__table__.c.id)
    )
    return row_id


async def _account(connection: AsyncConnection, tenant_id: str) -> uuid.UUID:
    return await _insert(
        connection,
        Account,
        tenant_id=tenant_id,
        email="user@example.com",
        imap_host="imap.example.com",
        imap_port=993,
        imap_security="tls",
        imap_username="user",
        imap_secret="ciphertext",
        smtp_host="smtp.example.com",
        smtp_port=465,
        smtp_security="tls",
        smtp_username="user",
        smtp_secret="ciphertext",
    )


@pytest.fixture
async def connection(database_url: str) -> AsyncIterator[AsyncConnection]:
    """A connection in a transaction that is rolled back, leaving the shared database as it was."""
    engine = create_async_engine(database_url, poolclass=NullPool)
    try:
        async with engine.connect() as connection:
            transaction = await connection.begin()
            yield connection
            await transaction.rollback()
    finally:
        await engine.dispose()


async def test_deletes_cascade_within_the_tenant(connection: AsyncConnection) -> None:
    tenant = f"t-{uuid.uuid4().hex[:8]}"
    account_id = await _account(connection, tenant)
    owner = {"tenant_id": tenant, "account_id": account_id}
    mailbox_id = await _insert(connection, Mailbox, **owner, name="INBOX")
    thread_id = await _insert(connection, Thread, **owner, last_message_at=datetime.now(UTC))
    message_id = await _insert(
        connection,
        Message,
        **owner,
        mailbox_id=mailbox_id,
        thread_id=thread_id,
        uid=1,
        uidvalidity=1,
        internal_date=datetime.now(UTC),
        size=100,
    )
    await _insert(
        connection,
        Attachment,
        tenant_id=tenant,
        message_id=message_id,
        section="2",
        content_type="application/pdf",
        size=10,
    )
    draft_id = await _insert(connection, Draft, **owner, in_reply_to_message_id=message_id)
    outbox_id = await _insert(
        connection,
        OutboxMessage,
        **owner,
        draft_id=draft_id,
        message_id_header="<a@example.com>",
        envelope_from="user@example.com",
        envelope_to=["to@example.com"],
        raw_mime=b"Subject: hi\r\n\r\nhi\r\n",
    )

    # SET NULL clears the reference only; tenant_id (part of the key) stays.
    await connection.execute(sa.delete(Thread).where(Thread.id == thread_id))
    message = (await connection.execute(sa.select(Message).where(Message.id == message_id))).one()
    assert (message.thread_id, message.tenant_id) == (None, tenant)

    await connection.execute(sa.delete(Message).where(Message.id == message_id))
    attachments = sa.select(sa.func.count()).where(Attachment.tenant_id == tenant)
    assert await connection.scalar(attachments) == 0
    draft = (await connection.execute(sa.select(Draft).where(Draft.id == draft_id))).one()
    assert draft.in_reply_to_message_id is None

    await connection.execute(sa.delete(Draft).where(Draft.id == draft_id))
    outbox_draft_id = sa.select(OutboxMessage.draft_id).where(OutboxMessage.id == outbox_id)
    assert await connection.scalar(outbox_draft_id) is None

    await connection.execute(sa.delete(Account).where(Account.id == account_id))
    for model in (Mailbox, OutboxMessage):
        remaining = sa.select(sa.func.count()).where(model.tenant_id == tenant)
        assert await connection.scalar(remaining) == 0, model.__tablename__


async def test_a_row_cannot_reference_another_tenants_row(connection: AsyncConnection) -> None:
    account_id = await _account(connection, f"t-{uuid.uuid4().hex[:8]}")
    with pytest.raises(IntegrityError, match="fk_mailboxes_account_id_accounts"):
        await _insert(
            connection, Mailbox, tenant_id="someone-else", account_id=account_id, name="INBOX"
        )
