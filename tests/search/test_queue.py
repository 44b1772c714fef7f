"""The search queue on PostgreSQL: what the `messages` triggers queue (and what they do
not), the notification, and the repository the indexer reads it through."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import asyncpg
import pytest
import sqlalchemy as sa
from alembic import command
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.pool import NullPool

from mailsvc.kit.reads import ReadPool
from mailsvc.kit.repository import TenantScope
from mailsvc.models import Account, Mailbox, Message, Thread
from mailsvc.ops.migrations import alembic_config
from mailsvc.search.backend import SEARCH_BODY_CHARS, Address
from mailsvc.search.queue_repository import (
    SEARCH_CHANNEL,
    SearchQueueRepository,
    tenants_with_queued_messages,
)
from mailsvc.sync.read_repository import SyncReads
from tests.fixtures.databases import asyncpg_dsn, create_database, drop_database
from tests.search.stored import (
    StoredTenant,
    clear_queue,
    delete_messages,
    new_tenant,
    queued,
    store,
    update_messages,
)

Sessions = async_sessionmaker[AsyncSession]


@pytest.fixture
async def tenant(sessionmaker: Sessions) -> StoredTenant:
    return await new_tenant(sessionmaker)


async def test_a_stored_batch_queues_each_message_once(
    sessionmaker: Sessions, tenant: StoredTenant
) -> None:
    ids = await store(sessionmaker, tenant, 5)
    assert await queued(sessionmaker, tenant) == ids


async def test_flag_changes_and_moves_queue_the_changed_messages_only(
    sessionmaker: Sessions, tenant: StoredTenant
) -> None:
    ids = await store(sessionmaker, tenant, 4)
    await clear_queue(sessionmaker, tenant)

    await update_messages(sessionmaker, tenant, ids[:2], flags=["\\Seen"])
    assert sorted(await queued(sessionmaker, tenant)) == sorted(ids[:2])

    await clear_queue(sessionmaker, tenant)
    await update_messages(
        sessionmaker, tenant, ids[2:3], mailbox_id=tenant.mailbox_ids["Archive"], uid=77
    )
    assert await queued(sessionmaker, tenant) == ids[2:3]

    await clear_queue(sessionmaker, tenant)
    await _give_thread(sessionmaker, tenant, ids[3])
    assert await queued(sessionmaker, tenant) == ids[3:]

    # An UPDATE that sets a searched column to the value it has changes nothing.
    await clear_queue(sessionmaker, tenant)
    await update_messages(sessionmaker, tenant, ids, has_attachments=False)
    assert await queued(sessionmaker, tenant) == []


async def test_updates_of_columns_no_search_reads_queue_nothing(
    sessionmaker: Sessions, tenant: StoredTenant
) -> None:
    ids = await store(sessionmaker, tenant, 3)
    await clear_queue(sessionmaker, tenant)

    await update_messages(
        sessionmaker,
        tenant,
        ids,
        modseq=42,
        snippet="a preview",
        html_body="<p>hi</p>",
        size=2000,
        message_id_header="<x@acme.test>",
    )
    assert await queued(sessionmaker, tenant) == []


@pytest.mark.parametrize(
    ("column", "value"),
    [
        ("subject", "a new subject"),
        ("text_body", "a new body"),
        ("from_", [{"name": None, "address": "dave@acme.test"}]),
        ("to", [{"name": None, "address": "erin@acme.test"}]),
        ("cc", []),
        ("bcc", [{"name": None, "address": "frank@acme.test"}]),
        ("reply_to", [{"name": None, "address": "grace@acme.test"}]),
        ("has_attachments", True),
        ("internal_date", datetime(2020, 1, 1, tzinfo=UTC)),
    ],
)
async def test_each_searched_column_queues_its_message(
    sessionmaker: Sessions, tenant: StoredTenant, column: str, value: object
) -> None:
    ids = await store(sessionmaker, tenant, 2)
    await clear_queue(sessionmaker, tenant)
    await update_messages(sessionmaker, tenant, ids[:1], **{column: value})
    assert await queued(sessionmaker, tenant) == ids[:1]


async def _give_thread(sessionmaker: Sessions, tenant: StoredTenant, message_id: uuid.UUID) -> None:
    async with sessionmaker.begin() as session:
        thread = await TenantScope(session, tenant.id).add(
            Thread(account_id=tenant.account_id, last_message_at=datetime.now(UTC))
        )
        await session.execute(
            TenantScope(session, tenant.id)
            .update(Message)
            .where(Message.id == message_id)
            .values(thread_id=thread.id)
        )


async def test_expunged_messages_are_queued_for_removal(
    sessionmaker: Sessions, tenant: StoredTenant
) -> None:
    ids = await store(sessionmaker, tenant, 3)
    await clear_queue(sessionmaker, tenant)
    await delete_messages(sessionmaker, tenant, ids[1:])
    assert sorted(await queued(sessionmaker, tenant)) == sorted(ids[1:])
    async with sessionmaker() as session:
        found = await SearchQueueRepository(session, tenant.id).documents(ids)
    assert set(found) == {ids[0]}  # the others have no row: the indexer removes them


async def test_a_deleted_account_queues_its_messages_for_removal(
    sessionmaker: Sessions, tenant: StoredTenant
) -> None:
    ids = await store(sessionmaker, tenant, 2)
    await clear_queue(sessionmaker, tenant)
    async with sessionmaker.begin() as session:
        await session.execute(
            TenantScope(session, tenant.id).delete(Account).where(Account.id == tenant.account_id)
        )
    assert sorted(await queued(sessionmaker, tenant)) == sorted(ids)


async def test_each_statement_notifies_every_tenant_it_queued_for(
    sessionmaker: Sessions, database_url: str
) -> None:
    first, second = await new_tenant(sessionmaker), await new_tenant(sessionmaker)
    ids = await store(sessionmaker, first, 1) + await store(sessionmaker, second, 1)
    untouched = await new_tenant(sessionmaker)
    await store(sessionmaker, untouched, 1)

    received: asyncio.Queue[str] = asyncio.Queue()
    listener = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        await listener.add_listener(
            SEARCH_CHANNEL, lambda _c, _pid, _channel, payload: received.put_nowait(payload)
        )
        # One DELETE over both tenants (an operator's, say): a notification for each.
        engine = create_async_engine(database_url, poolclass=NullPool)
        async with engine.begin() as connection:
            await connection.execute(sa.delete(Message).where(Message.id.in_(ids)))
        await engine.dispose()
        payloads = {await asyncio.wait_for(received.get(), 10) for _ in range(2)}
        assert payloads == {first.id, second.id}
        # An update that queues nothing notifies no one: the next notification is
        # the next statement's that does queue (they arrive in commit order).
        untouched_ids = list(await queued(sessionmaker, untouched))
        await update_messages(sessionmaker, untouched, untouched_ids, modseq=1)
        await store(sessionmaker, first, 1)
        assert await asyncio.wait_for(received.get(), 10) == first.id
    finally:
        await listener.close()


async def test_the_repository_takes_oldest_first_and_forgets_exactly_what_it_took(
    sessionmaker: Sessions, tenant: StoredTenant
) -> None:
    ids = await store(sessionmaker, tenant, 5)
    other = await new_tenant(sessionmaker)
    await store(sessionmaker, other, 2)

    async with sessionmaker.begin() as session:
        queue = SearchQueueRepository(session, tenant.id)
        taken = await queue.take(3)
        assert [entry.message_id for entry in taken] == ids[:3]
        assert {entry.account_id for entry in taken} == {tenant.account_id}
        await queue.forget([entry.seq for entry in taken])
    assert await queued(sessionmaker, tenant) == ids[3:]
    assert len(await queued(sessionmaker, other)) == 2
    async with sessionmaker() as session:
        assert {tenant.id, other.id} <= set(await tenants_with_queued_messages(session))


async def test_documents_are_read_from_the_rows(
    sessionmaker: Sessions, tenant: StoredTenant
) -> None:
    long_body = "word " * (SEARCH_BODY_CHARS // 5 + 100)
    (message_id,) = await store(
        sessionmaker, tenant, 1, body=long_body, flags=["\\Seen", "\\Flagged", "$Label"]
    )
    await update_messages(
        sessionmaker, tenant, [message_id], bcc=[{"name": "Dana", "address": "dana@acme.test"}]
    )
    async with sessionmaker() as session:
        documents = await SearchQueueRepository(session, tenant.id).documents([message_id])
    document = documents[message_id]
    assert document.account_id == tenant.account_id
    assert document.mailbox_id == tenant.mailbox_ids["INBOX"]
    assert document.subject == "quokka number 1"
    assert (document.seen, document.flagged, document.has_attachments) == (True, True, False)
    assert document.from_ == (Address("Alice Example", "alice@acme.test"),)
    assert document.to == (
        Address(None, "bob@acme.test"),
        Address("Carol", "carol@acme.test"),
        Address("Dana", "dana@acme.test"),
    )
    assert document.reply_to == ()
    assert document.body == long_body[:SEARCH_BODY_CHARS]


async def test_queue_all_adds_what_is_not_queued_and_wakes_the_indexers(
    sessionmaker: Sessions, database_url: str
) -> None:
    tenant = await new_tenant(sessionmaker)
    inbox = await store(sessionmaker, tenant, 3)
    archive = await store(sessionmaker, tenant, 2, mailbox="Archive")
    await clear_queue(sessionmaker, tenant)
    await update_messages(sessionmaker, tenant, inbox[:1], flags=["\\Seen"])

    received: asyncio.Queue[str] = asyncio.Queue()
    listener = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        await listener.add_listener(
            SEARCH_CHANNEL, lambda _c, _pid, _channel, payload: received.put_nowait(payload)
        )
        async with sessionmaker.begin() as session:
            added = await SearchQueueRepository(session, tenant.id).queue_all()
        assert await asyncio.wait_for(received.get(), 10) == tenant.id
    finally:
        await listener.close()
    assert added == 4  # inbox[0] was queued by its flag change already
    rows = await queued(sessionmaker, tenant)
    assert sorted(rows) == sorted(inbox + archive)
    # After what was queued before, newest first: recent mail is searchable first.
    assert rows[0] == inbox[0]
    async with sessionmaker() as session:
        received_at = dict(
            (
                await session.execute(
                    TenantScope(session, tenant.id).select(Message.id, Message.internal_date)
                )
            ).all()
        )
    keys = [(received_at[i], i) for i in rows[1:]]
    assert keys == sorted(keys, reverse=True)

    async with sessionmaker.begin() as session:
        queue = SearchQueueRepository(session, tenant.id)
        assert await queue.queue_all(account_id=tenant.account_id) == 0
        assert await queue.queue_all(account_id=uuid.uuid4()) == 0


async def _indexed_by_mailbox(database_url: str, tenant: StoredTenant) -> dict[str, int]:
    """`messages_indexed` of each mailbox, as the sync status reads it."""
    reads = await ReadPool.open(database_url, size=1)
    try:
        progress = await SyncReads(reads, tenant.id).progress(tenant.account_id)
    finally:
        await reads.close()
    assert progress is not None
    return {box["name"]: box["messages_indexed"] for box in json.loads(progress.mailboxes)}


async def test_pending_counts_each_stored_message_once_per_mailbox(
    sessionmaker: Sessions, tenant: StoredTenant, database_url: str
) -> None:
    inbox = await store(sessionmaker, tenant, 3)
    archive = await store(sessionmaker, tenant, 2, mailbox="Archive")
    await update_messages(sessionmaker, tenant, inbox, flags=["\\Seen"])  # queued twice now
    await delete_messages(sessionmaker, tenant, archive[:1])  # queued, but not stored
    async with sessionmaker.begin() as session:
        # What the sync's counters would say of the stored messages.
        for name, synced in (("INBOX", 3), ("Archive", 1)):
            await session.execute(
                sa.update(Mailbox)
                .where(Mailbox.id == tenant.mailbox_ids[name])
                .values(messages_synced=synced)
            )
    # Each stored message is pending once, however many rows it has queued.
    assert await _indexed_by_mailbox(database_url, tenant) == {"INBOX": 0, "Archive": 0}

    async with sessionmaker() as session:
        queue = SearchQueueRepository(session, tenant.id)
        assert await queue.has_pending()
        assert await queue.has_pending(account_id=tenant.account_id)
        assert not await queue.has_pending(account_id=uuid.uuid4())
        assert await queue.remaining() == 3 + 3 + 2 + 1

    await clear_queue(sessionmaker, tenant)
    assert await _indexed_by_mailbox(database_url, tenant) == {"INBOX": 3, "Archive": 1}
    async with sessionmaker() as session:
        queue = SearchQueueRepository(session, tenant.id)
        assert not await queue.has_pending()


async def test_one_writer_lock_per_tenant_and_transaction(
    sessionmaker: Sessions, tenant: StoredTenant
) -> None:
    other = await new_tenant(sessionmaker)
    async with sessionmaker.begin() as holder:
        assert await SearchQueueRepository(holder, tenant.id).lock_writer()
        async with sessionmaker.begin() as contender:
            assert not await SearchQueueRepository(contender, tenant.id).lock_writer()
            assert await SearchQueueRepository(contender, other.id).lock_writer()
    async with sessionmaker.begin() as session:
        assert await SearchQueueRepository(session, tenant.id).lock_writer()


@pytest.fixture
async def scratch_database_url(postgres_server_url: str) -> AsyncIterator[str]:
    url, name = await create_database(postgres_server_url, prefix="mailsvc_queue", migrate=False)
    yield url
    await drop_database(postgres_server_url, name)


async def test_the_upgrade_queues_every_stored_message(scratch_database_url: str) -> None:
    config = alembic_config(scratch_database_url)
    await asyncio.to_thread(command.upgrade, config, "0012")
    engine = create_async_engine(scratch_database_url, poolclass=NullPool)
    sessions = async_sessionmaker(engine, expire_on_commit=False)
    try:
        # Mirrored before the queue existed: one account synced, one not yet.
        synced = await _old_tenant(sessions, synced=True)
        unsynced = await _old_tenant(sessions, synced=False)
        await asyncio.to_thread(command.upgrade, config, "0013")

        for tenant, ids in (synced, unsynced):
            assert sorted(await queued(sessions, tenant)) == sorted(ids)
        async with sessions() as session:
            indexed = dict((await session.execute(sa.select(Account.id, Account.indexed_at))).all())
        # The synced account was searchable before: no `account.indexed` is due for it.
        assert indexed[synced[0].account_id] is not None
        assert indexed[unsynced[0].account_id] is None
    finally:
        await engine.dispose()


async def _old_tenant(sessions: Sessions, *, synced: bool) -> tuple[StoredTenant, list[uuid.UUID]]:
    # Core INSERTs of the columns revision 0012 has (the ORM model has indexed_at).
    tenant_id = f"old-{uuid.uuid4().hex[:8]}"
    account_id, mailbox_id = uuid.uuid4(), uuid.uuid4()
    async with sessions.begin() as session:
        await session.execute(
            sa.text(
                "INSERT INTO accounts (id, tenant_id, email, imap_host, imap_port,"
                " imap_security, imap_username, imap_secret, smtp_host, smtp_port,"
                " smtp_security, smtp_username, smtp_secret)"
                " VALUES (:id, :tenant, 'u@example.com', 'imap.example.com', 993, 'tls',"
                " 'u', 'x', 'smtp.example.com', 465, 'tls', 'u', 'x')"
            ),
            {"id": account_id, "tenant": tenant_id},
        )
        await session.execute(
            sa.text(
                "INSERT INTO mailboxes (id, tenant_id, account_id, name, last_synced_at)"
                " VALUES (:id, :tenant, :account, 'INBOX', " + ("now()" if synced else "NULL") + ")"
            ),
            {"id": mailbox_id, "tenant": tenant_id, "account": account_id},
        )
        ids = [uuid.uuid4() for _ in range(3)]
        for uid, message_id in enumerate(ids, start=1):
            await session.execute(
                sa.text(
                    "INSERT INTO messages (id, tenant_id, account_id, mailbox_id, uid,"
                    " uidvalidity, internal_date, size)"
                    " VALUES (:id, :tenant, :account, :mailbox, :uid, 1, now(), 10)"
                ),
                {
                    "id": message_id,
                    "tenant": tenant_id,
                    "account": account_id,
                    "mailbox": mailbox_id,
                    "uid": uid,
                },
            )
    return StoredTenant(tenant_id, account_id, {"INBOX": mailbox_id}), ids
