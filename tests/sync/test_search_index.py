"""Search documents are off the sync's path: what a pass stores, changes or deletes is
queued for the worker's indexer (by triggers on `messages`, in the pass's own
transactions), and found by search once the indexer has taken it."""

import asyncio
import uuid
from email.message import EmailMessage

from fastapi import FastAPI
from sqlalchemy import text

from mailsvc.kit.repository import TenantScope
from mailsvc.models import Message, SearchQueueEntry
from mailsvc.runtime import Runtime
from mailsvc.search.filter import MessageFilter
from mailsvc.sync.engine import SyncEngine
from tests.fixtures import imap_client
from tests.fixtures.dovecot import DovecotServer
from tests.fixtures.mail import SyncTarget
from tests.fixtures.search import make_searchable
from tests.sync.messages import make_message


def _message(subject: str, sender: str, body: str) -> bytes:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = "Team <team@example.test>"
    message["Subject"] = subject
    message["Message-ID"] = f"<{uuid.uuid4().hex}@example.test>"
    message.set_content(body)
    return message.as_bytes()


async def _queued(engine: SyncEngine, target: SyncTarget) -> list[uuid.UUID]:
    """Message ids of the tenant's queue rows, oldest first."""
    async with engine.sessionmaker() as session:
        rows = await session.scalars(
            TenantScope(session, target.tenant_id)
            .select(SearchQueueEntry.message_id)
            .order_by(SearchQueueEntry.seq)
        )
        return list(rows.all())


async def _stored(engine: SyncEngine, target: SyncTarget) -> dict[str, uuid.UUID]:
    """Subject -> id of the account's stored messages."""
    async with engine.sessionmaker() as session:
        rows = await session.execute(
            TenantScope(session, target.tenant_id)
            .select(Message.subject, Message.id)
            .where(Message.account_id == target.account_id)
        )
        return {str(subject): message_id for subject, message_id in rows}


async def _found(app: FastAPI, target: SyncTarget, filters: MessageFilter) -> set[uuid.UUID]:
    """What the app's search backend finds for `filters` in the target's tenant."""
    runtime: Runtime = app.state.mailsvc
    page = await runtime.search.search(
        target.tenant_id, filters, order="newest", after=None, limit=1000
    )
    assert not page.more
    return {hit.message_id for hit in page.hits}


async def test_every_stored_message_is_queued_and_searchable_once_indexed(
    app: FastAPI, engine: SyncEngine, target: SyncTarget, dovecot: DovecotServer
) -> None:
    messages = [
        _message("Quarterly budget", "Alice Zephyr <alice@example.test>", "Numbers attached."),
        _message("Lunch", "Bob <bob@example.test>", "The pelican crossing is closed."),
        _message("Встреча завтра", "Иван <ivan@example.test>", "Обсудим проект в десять."),
        *[make_message(i)[1] for i in range(300)],  # more than one batch
    ]
    await asyncio.to_thread(imap_client.append, dovecot, target.user, "INBOX", messages)

    await engine.sync_account(target.tenant_id, target.account_id)

    # Each stored message queued once: the sync wrote no search document itself.
    stored = await _stored(engine, target)
    queued = await _queued(engine, target)
    assert len(stored) == 303
    assert sorted(queued) == sorted(stored.values())

    assert await make_searchable(app, target.tenant_id) == 303
    assert await _queued(engine, target) == []
    account = target.account_id
    assert await _found(app, target, MessageFilter(account_id=account, text="budget")) == {
        stored["Quarterly budget"]
    }
    # A display name, a whole address, a phrase of the body, Cyrillic.
    assert await _found(app, target, MessageFilter(text="zephyr")) == {stored["Quarterly budget"]}
    assert await _found(app, target, MessageFilter(text="bob@example.test")) == {stored["Lunch"]}
    assert await _found(app, target, MessageFilter(text='"pelican crossing"')) == {stored["Lunch"]}
    assert await _found(app, target, MessageFilter(text="проект")) == {stored["Встреча завтра"]}
    assert len(await _found(app, target, MessageFilter(text='"second line"'))) == 300


async def test_flag_changes_and_expunges_a_pass_finds_are_queued(
    app: FastAPI, engine: SyncEngine, target: SyncTarget, dovecot: DovecotServer
) -> None:
    messages = [make_message(i, subject=f"Note {i}")[1] for i in range(1, 5)]
    await asyncio.to_thread(imap_client.append, dovecot, target.user, "INBOX", messages)
    await engine.sync_account(target.tenant_id, target.account_id)
    await make_searchable(app, target.tenant_id)
    stored = await _stored(engine, target)

    await asyncio.to_thread(
        imap_client.run,
        dovecot,
        target.user,
        "INBOX",
        ("STORE", "2", "+FLAGS", "(\\Flagged)"),
        ("STORE", "3", "+FLAGS", "(\\Deleted)"),  # expunged by `run`
    )
    report = await engine.sync_account(target.tenant_id, target.account_id)
    assert (report.updated, report.deleted) == (1, 1)

    assert sorted(await _queued(engine, target)) == sorted([stored["Note 2"], stored["Note 3"]])
    await make_searchable(app, target.tenant_id)
    note = MessageFilter(account_id=target.account_id, subject=("note",))
    assert await _found(app, target, note) == {stored["Note 1"], stored["Note 2"], stored["Note 4"]}
    flagged = MessageFilter(account_id=target.account_id, subject=("note",), flagged=True)
    assert await _found(app, target, flagged) == {stored["Note 2"]}


async def test_a_stored_message_is_queued_in_the_transaction_that_stores_it(
    engine: SyncEngine, target: SyncTarget, dovecot: DovecotServer
) -> None:
    # Nothing is left to a later step the process could die before: a row without its
    # queue entry would never become searchable.
    await asyncio.to_thread(imap_client.append, dovecot, target.user, "INBOX", [make_message(1)[1]])
    await engine.sync_account(target.tenant_id, target.account_id)
    async with engine.sessionmaker() as session:
        pairs = (
            await session.execute(
                text(
                    "SELECT m.xmin::text AS stored, q.xmin::text AS queued FROM messages m"
                    " JOIN search_queue q ON q.tenant_id = m.tenant_id AND q.message_id = m.id"
                    " WHERE m.tenant_id = :tenant AND m.account_id = :account"
                ),
                {"tenant": target.tenant_id, "account": target.account_id},
            )
        ).all()
    assert len(pairs) == 1
    assert pairs[0].stored == pairs[0].queued
