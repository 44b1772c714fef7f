"""Search documents: filled after the store, by the same pass, and repaired when cut off."""

import asyncio
import uuid
from email.message import EmailMessage

from sqlalchemy import func, select, text, update

from mailsvc.models import Message
from mailsvc.sync.engine import SyncEngine
from tests.fixtures import imap_client
from tests.fixtures.dovecot import DovecotServer
from tests.fixtures.mail import SyncTarget
from tests.sync.messages import make_message


def _message(subject: str, sender: str, body: str) -> bytes:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = "Team <team@example.test>"
    message["Subject"] = subject
    message["Message-ID"] = f"<{uuid.uuid4().hex}@example.test>"
    message.set_content(body)
    return message.as_bytes()


async def _matching(engine: SyncEngine, target: SyncTarget, query: str) -> list[str | None]:
    """Subjects of the account's messages whose search document matches `query`."""
    async with engine.sessionmaker() as session:
        rows = await session.scalars(
            select(Message.subject)
            .where(
                Message.tenant_id == target.tenant_id,
                Message.account_id == target.account_id,
                Message.search_vector.op("@@")(func.websearch_to_tsquery("simple", query)),
            )
            .order_by(Message.subject)
        )
        return list(rows.all())


async def _unindexed(engine: SyncEngine, target: SyncTarget) -> int:
    async with engine.sessionmaker() as session:
        count = await session.scalar(
            select(func.count()).where(
                Message.tenant_id == target.tenant_id,
                Message.account_id == target.account_id,
                Message.search_vector.is_(None),
            )
        )
        return int(count or 0)


async def test_a_sync_pass_leaves_every_message_searchable(
    engine: SyncEngine, target: SyncTarget, dovecot: DovecotServer
) -> None:
    messages = [
        _message("Quarterly budget", "Alice Zephyr <alice@example.test>", "Numbers attached."),
        _message("Lunch", "Bob <bob@example.test>", "The pelican crossing is closed."),
        _message("Встреча завтра", "Иван <ivan@example.test>", "Обсудим проект в десять."),
        *[make_message(i)[1] for i in range(300)],  # more than one batch
    ]
    await asyncio.to_thread(imap_client.append, dovecot, target.user, "INBOX", messages)

    await engine.sync_account(target.tenant_id, target.account_id)

    assert await _unindexed(engine, target) == 0
    assert await _matching(engine, target, "budget") == ["Quarterly budget"]
    assert await _matching(engine, target, "zephyr") == ["Quarterly budget"]  # display name
    assert await _matching(engine, target, "bob@example.test") == ["Lunch"]
    assert await _matching(engine, target, "pelican crossing") == ["Lunch"]
    assert await _matching(engine, target, "проект") == ["Встреча завтра"]
    assert len(await _matching(engine, target, "second line")) == 300


async def test_documents_a_cut_off_pass_left_unfilled_are_filled_by_the_next(
    engine: SyncEngine, target: SyncTarget, dovecot: DovecotServer
) -> None:
    messages = [make_message(i)[1] for i in range(20)]
    await asyncio.to_thread(imap_client.append, dovecot, target.user, "INBOX", messages)
    await engine.sync_account(target.tenant_id, target.account_id)
    # As a process killed between a batch's store and its indexing leaves them.
    async with engine.sessionmaker.begin() as session:
        await session.execute(
            update(Message)
            .where(Message.tenant_id == target.tenant_id, Message.account_id == target.account_id)
            .values(search_vector=None)
        )
    assert await _unindexed(engine, target) == 20

    report = await engine.sync_account(target.tenant_id, target.account_id)

    assert report.new_messages == 0
    assert await _unindexed(engine, target) == 0
    assert len(await _matching(engine, target, "second line")) == 20


async def test_filling_the_document_is_not_a_change_of_the_message(
    engine: SyncEngine, target: SyncTarget, dovecot: DovecotServer
) -> None:
    await asyncio.to_thread(imap_client.append, dovecot, target.user, "INBOX", [make_message(1)[1]])
    await engine.sync_account(target.tenant_id, target.account_id)
    async with engine.sessionmaker() as session:
        created, updated = (
            await session.execute(
                text("SELECT created_at, updated_at FROM messages WHERE tenant_id = :t"),
                {"t": target.tenant_id},
            )
        ).one()
    assert created == updated
