import asyncio
import uuid

import pytest
from sqlalchemy import func, select

from mailsvc.models import Attachment, Mailbox, Message, Thread
from mailsvc.sync.engine import AccountGoneError, SyncEngine
from tests.fixtures import imap_client
from tests.fixtures.dovecot import DovecotServer
from tests.fixtures.mail import SyncTarget
from tests.sync.messages import make_message

FOLDERS = ["INBOX", "Archive", "Sent"]
State = set[tuple[str, int, frozenset[str]]]


async def stored_state(engine: SyncEngine, target: SyncTarget) -> State:
    async with engine.sessionmaker() as session:
        rows = await session.execute(
            select(Mailbox.name, Message.uid, Message.flags)
            .join(Message, Message.mailbox_id == Mailbox.id)
            .where(Message.tenant_id == target.tenant_id, Message.account_id == target.account_id)
        )
        return {(name, int(uid), frozenset(flags)) for name, uid, flags in rows.all()}


async def server_state(
    dovecot: DovecotServer, target: SyncTarget
) -> set[tuple[str, int, frozenset[str]]]:
    return await asyncio.to_thread(imap_client.server_state, dovecot, target.user, FOLDERS)


async def test_initial_sync_mirrors_every_folder(
    engine: SyncEngine, target: SyncTarget, dovecot: DovecotServer
) -> None:
    inbox = [make_message(i)[1] for i in range(150)]
    archive = [make_message(1000 + i)[1] for i in range(120)]
    sent = [make_message(2000 + i, attachment=b"\x00" * 300)[1] for i in range(60)]
    await asyncio.to_thread(imap_client.append, dovecot, target.user, "INBOX", inbox)
    await asyncio.to_thread(
        imap_client.append, dovecot, target.user, "Archive", archive, flags="\\Seen"
    )
    await asyncio.to_thread(
        imap_client.append, dovecot, target.user, "Sent", sent, flags="\\Seen \\Answered"
    )

    report = await engine.sync_account(target.tenant_id, target.account_id)

    assert report.new_messages == 330
    assert await stored_state(engine, target) == await server_state(dovecot, target)
    async with engine.sessionmaker() as session:
        roles = dict((await session.execute(
            select(Mailbox.name, Mailbox.special_use).where(Mailbox.account_id == target.account_id)
        )).all())  # fmt: skip
        attachments = await session.scalar(
            select(func.count())
            .select_from(Attachment)
            .where(Attachment.tenant_id == target.tenant_id)
        )
    assert roles["INBOX"] == "inbox"
    assert roles["Sent"] == "sent"
    assert attachments == 60


async def test_incremental_sync_follows_flags_expunges_moves_and_uidvalidity(
    engine: SyncEngine, target: SyncTarget, dovecot: DovecotServer
) -> None:
    messages = [make_message(i)[1] for i in range(20)]
    await asyncio.to_thread(imap_client.append, dovecot, target.user, "INBOX", messages)
    await engine.sync_account(target.tenant_id, target.account_id)

    await asyncio.to_thread(
        imap_client.run, dovecot, target.user, "INBOX",
        ("STORE", "3", "+FLAGS", "(\\Flagged)"),
        ("STORE", "5", "+FLAGS", "(\\Deleted)"),
        ("MOVE", "7", "Archive"),
    )  # fmt: skip
    report = await engine.sync_account(target.tenant_id, target.account_id)
    assert report.updated >= 1
    assert report.deleted >= 2
    state = await stored_state(engine, target)
    assert state == await server_state(dovecot, target)
    assert ("INBOX", 3, frozenset({"\\Flagged"})) in state
    assert not any(mailbox == "INBOX" and uid in (5, 7) for mailbox, uid, _ in state)
    assert any(mailbox == "Archive" for mailbox, _, _ in state)

    # Deleting and re-creating a mailbox gives it a new UIDVALIDITY.
    await asyncio.to_thread(_recreate_archive, dovecot, target)
    await engine.sync_account(target.tenant_id, target.account_id)
    state = await stored_state(engine, target)
    assert state == await server_state(dovecot, target)
    assert [s for s in state if s[0] == "Archive"] == [("Archive", 1, frozenset())]


def _recreate_archive(dovecot: DovecotServer, target: SyncTarget) -> None:
    with imap_client.imap_session(dovecot, target.user) as client:
        assert client.delete("Archive")[0] == "OK"
        assert client.create("Archive")[0] == "OK"
    imap_client.append(dovecot, target.user, "Archive", [make_message(999)[1]])


async def test_no_change_incremental_sync_does_nothing(
    engine: SyncEngine, target: SyncTarget, dovecot: DovecotServer
) -> None:
    await asyncio.to_thread(
        imap_client.append, dovecot, target.user, "INBOX", [make_message(i)[1] for i in range(5)]
    )
    await engine.sync_account(target.tenant_id, target.account_id)
    report = await engine.sync_account(target.tenant_id, target.account_id)
    assert (report.mailboxes, report.new_messages, report.updated, report.deleted) == (0, 0, 0, 0)


async def test_replies_share_a_thread_even_when_the_parent_arrives_late(
    engine: SyncEngine, target: SyncTarget, dovecot: DovecotServer
) -> None:
    parent_id, parent = make_message(1, subject="Plans")
    child_id, child = make_message(2, subject="Re: Plans", reply_to_id=parent_id)
    _, grandchild = make_message(3, subject="Re: Plans", reply_to_id=child_id)
    # The reply chain arrives child-first; the parent only later.
    await asyncio.to_thread(imap_client.append, dovecot, target.user, "INBOX", [grandchild])
    await engine.sync_account(target.tenant_id, target.account_id)
    await asyncio.to_thread(imap_client.append, dovecot, target.user, "Archive", [parent])
    await engine.sync_account(target.tenant_id, target.account_id)
    await asyncio.to_thread(imap_client.append, dovecot, target.user, "INBOX", [child])
    await engine.sync_account(target.tenant_id, target.account_id)

    async with engine.sessionmaker() as session:
        threads = (await session.scalars(
            select(Message.thread_id).where(Message.account_id == target.account_id)
        )).all()  # fmt: skip
        assert len(threads) == 3
        assert len(set(threads)) == 1
        thread = await session.get(Thread, threads[0])
    assert thread is not None
    assert thread.message_count == 3
    assert thread.unread_count == 3
    assert thread.subject == "Re: Plans"


async def test_an_unknown_account_is_reported_gone(engine: SyncEngine, target: SyncTarget) -> None:
    with pytest.raises(AccountGoneError):
        await engine.sync_account(target.tenant_id, uuid.uuid4())


async def test_created_renamed_and_deleted_mailboxes_are_followed(
    engine: SyncEngine, target: SyncTarget, dovecot: DovecotServer
) -> None:
    def create_folders() -> None:
        with imap_client.imap_session(dovecot, target.user) as client:
            assert client.create("Projects")[0] == "OK"
            assert client.create("Scratch")[0] == "OK"
        imap_client.append(dovecot, target.user, "Projects", [make_message(i)[1] for i in range(3)])

    await asyncio.to_thread(create_folders)
    await engine.sync_account(target.tenant_id, target.account_id)

    async def rows() -> dict[str, list[uuid.UUID]]:
        async with engine.sessionmaker() as session:
            result = await session.execute(
                select(Mailbox.name, Message.id)
                .outerjoin(Message, Message.mailbox_id == Mailbox.id)
                .where(Mailbox.account_id == target.account_id)
            )
            found: dict[str, list[uuid.UUID]] = {}
            for name, message_id in result.all():
                found.setdefault(name, [])
                if message_id is not None:
                    found[name].append(message_id)
            return found

    before = await rows()
    assert len(before["Projects"]) == 3
    assert "Scratch" in before

    def reorganize() -> None:
        with imap_client.imap_session(dovecot, target.user) as client:
            assert client.rename("Projects", "Work")[0] == "OK"
            assert client.delete("Scratch")[0] == "OK"
            assert client.create("Later")[0] == "OK"

    await asyncio.to_thread(reorganize)
    await engine.sync_account(target.tenant_id, target.account_id)

    after = await rows()
    assert "Projects" not in after
    assert "Scratch" not in after
    assert "Later" in after
    # A rename keeps the stored messages (same rows), rather than refetching them.
    assert sorted(after["Work"]) == sorted(before["Projects"])
