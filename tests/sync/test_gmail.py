"""A Gmail account synced end to end: All Mail as the store, labels on the rows.

No Gmail server is reachable here. The server is `tests.fixtures.imap_script` in
Gmail mode: a real IMAP server on a socket that lists Gmail's folders with their
special-use attributes and answers FETCH and STORE with X-GM-MSGID, X-GM-THRID and
X-GM-LABELS in the forms Google documents.
"""

from __future__ import annotations

import uuid
from typing import Any

import httpx
from sqlalchemy import select, update

from mailsvc.models import Change, Mailbox, Message
from mailsvc.sync.engine import SyncEngine
from tests.fixtures.imap_script import (
    GMAIL_CAPABILITIES,
    FakeMailbox,
    ScriptedImapServer,
    gmail_layout,
    register_account,
)
from tests.sync.messages import make_message

THREAD_A = 1266894439832287888
THREAD_B = 1266894439832287999


def _all_mail() -> FakeMailbox:
    """Three messages: two of one Gmail thread (though their headers do not link
    them), and a reply to the first that Gmail put in a thread of its own."""
    all_mail = FakeMailbox(uidvalidity=3)
    first_id, first = make_message(1, subject="Budget 2027")
    all_mail.add(
        first,
        labels=["\\Inbox", "\\Important", "Work", "Muy Importante", "工作"],
        gm_msgid=1278455344230334865,
        gm_thrid=THREAD_A,
        flags=["\\Seen"],
    )
    all_mail.add(make_message(2, subject="Lunch?")[1], labels=[], gm_thrid=THREAD_A)
    all_mail.add(make_message(3, reply_to_id=first_id)[1], labels=["\\Sent"], gm_thrid=THREAD_B)
    return all_mail


async def _rows(engine: SyncEngine, account_id: uuid.UUID) -> list[tuple[str, Message]]:
    async with engine.sessionmaker() as session:
        rows = await session.execute(
            select(Mailbox.name, Message)
            .join(Message, Message.mailbox_id == Mailbox.id)
            .where(Message.account_id == account_id)
            .order_by(Mailbox.name, Message.uid)
        )
        return [(name, message) for name, message in rows.all()]


async def _mailboxes(engine: SyncEngine, account_id: uuid.UUID) -> dict[str, Mailbox]:
    async with engine.sessionmaker() as session:
        rows = await session.scalars(select(Mailbox).where(Mailbox.account_id == account_id))
        return {row.name: row for row in rows}


async def _changes(engine: SyncEngine, account_id: uuid.UUID, kind: str) -> list[dict[str, Any]]:
    async with engine.sessionmaker() as session:
        rows = await session.scalars(
            select(Change.payload)
            .where(Change.account_id == account_id, Change.type == kind)
            .order_by(Change.seq)
        )
        return list(rows.all())


def _selected(server: ScriptedImapServer) -> set[str]:
    return {
        command.split(" ", 1)[1].split(" (")[0].strip('"')
        for command in server.commands
        if command.upper().startswith(("SELECT", "EXAMINE"))
    }


async def test_all_mail_is_the_store_and_labels_are_on_the_rows(
    engine: SyncEngine, client: httpx.AsyncClient, auth: dict[str, str], tenant_id: str
) -> None:
    all_mail = _all_mail()
    spam, trash = FakeMailbox(uidvalidity=7), FakeMailbox(uidvalidity=9)
    spam.add(make_message(4, subject="You won")[1], labels=[], gm_msgid=4444)
    trash.add(make_message(5, subject="Old")[1], labels=["Work"], gm_msgid=5555)
    layout = gmail_layout(
        all_mail, labels=["Work", "Muy Importante", "工作"], spam=spam, trash=trash
    )
    async with ScriptedImapServer(capabilities=GMAIL_CAPABILITIES, mailboxes=layout) as server:
        account_id = await register_account(client, auth, server)
        report = await engine.sync_account(tenant_id, account_id)
        # Only the store was selected: never INBOX, a label or a [Gmail] special folder.
        assert _selected(server) == {"[Gmail]/All Mail", "[Gmail]/Spam", "[Gmail]/Trash"}

    assert report.new_messages == 5
    rows = await _rows(engine, account_id)
    # One row per message however many labels it has (the first has five).
    assert [(name, int(m.uid)) for name, m in rows] == [
        ("[Gmail]/All Mail", 1),
        ("[Gmail]/All Mail", 2),
        ("[Gmail]/All Mail", 3),
        ("[Gmail]/Spam", 1),
        ("[Gmail]/Trash", 1),
    ]
    first, second, reply, junk, trashed = (m for _, m in rows)
    assert first.labels == ["Muy Importante", "Work", "\\Important", "\\Inbox", "工作"]
    assert first.flags == ["\\Seen"]
    assert second.labels == []  # archived: no label at all, still one row
    assert reply.labels == ["\\Sent"]
    assert (junk.labels, trashed.labels) == ([], ["Work"])
    assert first.gm_message_id == 1278455344230334865
    assert (junk.gm_message_id, trashed.gm_message_id) == (4444, 5555)
    # Threads follow X-GM-THRID, not the headers: the reply is in a thread of its own.
    assert first.gm_thread_id == second.gm_thread_id == THREAD_A
    assert first.thread_id is not None
    assert first.thread_id == second.thread_id
    assert reply.thread_id not in (None, first.thread_id)

    boxes = await _mailboxes(engine, account_id)
    labels = {name: box.gmail_label for name, box in boxes.items()}
    assert labels == {
        "INBOX": "\\Inbox",
        "[Gmail]": None,
        "[Gmail]/All Mail": None,
        "[Gmail]/Drafts": "\\Draft",
        "[Gmail]/Important": "\\Important",
        "[Gmail]/Sent Mail": "\\Sent",
        "[Gmail]/Spam": None,
        "[Gmail]/Starred": "\\Starred",
        "[Gmail]/Trash": None,
        "Work": "Work",
        "Muy Importante": "Muy Importante",
        "工作": "工作",
    }
    # Label folders hold no rows and count none, but their pass is done.
    for name, box in boxes.items():
        if box.gmail_label is not None:
            assert (box.sync_state, box.messages_synced, box.messages_total) == (
                "synced",
                0,
                0,
            ), name
            assert box.last_synced_at is not None
    assert boxes["[Gmail]/All Mail"].messages_synced == 3


async def test_label_changes_on_the_server_reach_the_rows(
    engine: SyncEngine, client: httpx.AsyncClient, auth: dict[str, str], tenant_id: str
) -> None:
    all_mail = _all_mail()
    layout = gmail_layout(all_mail, labels=["Work", "Muy Importante", "工作"])
    async with ScriptedImapServer(capabilities=GMAIL_CAPABILITIES, mailboxes=layout) as server:
        account_id = await register_account(client, auth, server)
        await engine.sync_account(tenant_id, account_id)
        # Archived and relabelled in Gmail's web interface: only the labels change,
        # and Gmail raises the MODSEQ, so the CHANGEDSINCE fetch brings them.
        all_mail.set_labels(1, "Work", "Clients/Acme")
        server.commands.clear()
        report = await engine.sync_account(tenant_id, account_id)
        fetches = [c for c in server.commands if "CHANGEDSINCE" in c]

    assert report.updated == 1
    assert fetches == ["UID FETCH 1:* (UID FLAGS X-GM-LABELS) (CHANGEDSINCE 4)"]
    rows = await _rows(engine, account_id)
    assert rows[0][1].labels == ["Clients/Acme", "Work"]
    assert rows[0][1].flags == ["\\Seen"]
    updated = await _changes(engine, account_id, "message.updated")
    assert updated == [
        {
            "message_id": str(rows[0][1].id),
            "mailbox_id": str(rows[0][1].mailbox_id),
            "uid": 1,
            "flags": ["\\Seen"],
            "labels": ["Clients/Acme", "Work"],
        }
    ]


async def test_a_push_in_inbox_syncs_all_mail(
    engine: SyncEngine, client: httpx.AsyncClient, auth: dict[str, str], tenant_id: str
) -> None:
    all_mail = _all_mail()
    layout = gmail_layout(all_mail, labels=["Work"])
    async with ScriptedImapServer(capabilities=GMAIL_CAPABILITIES, mailboxes=layout) as server:
        account_id = await register_account(client, auth, server)
        await engine.sync_account(tenant_id, account_id)
        all_mail.add(make_message(9, subject="New mail")[1], labels=["\\Inbox"])
        # What the IDLE watcher asks for when INBOX reports new mail.
        report = await engine.sync_account(tenant_id, account_id, mailboxes=["INBOX"])

    assert report.new_messages == 1
    rows = await _rows(engine, account_id)
    assert [(name, m.subject, m.labels) for name, m in rows][-1] == (
        "[Gmail]/All Mail",
        "New mail",
        ["\\Inbox"],
    )


async def test_folders_mirrored_before_all_mail_appeared_are_dropped(
    engine: SyncEngine, client: httpx.AsyncClient, auth: dict[str, str], tenant_id: str
) -> None:
    all_mail = _all_mail()
    layout = gmail_layout(all_mail, labels=["Work"])
    del layout["[Gmail]/All Mail"]  # hidden from IMAP in the Gmail settings
    layout["INBOX"].add(make_message(1, subject="Budget 2027")[1], labels=["\\Inbox"])
    async with ScriptedImapServer(capabilities=GMAIL_CAPABILITIES, mailboxes=layout) as server:
        account_id = await register_account(client, auth, server)
        await engine.sync_account(tenant_id, account_id)
        before = await _rows(engine, account_id)
        # Without All Mail the folders are mirrored as on any server, with labels.
        assert [(name, m.labels) for name, m in before] == [("INBOX", ["\\Inbox"])]

        server.mailboxes["[Gmail]/All Mail"] = all_mail
        await engine.sync_account(tenant_id, account_id)

    after = await _rows(engine, account_id)
    assert {name for name, _ in after} == {"[Gmail]/All Mail"}
    assert len(after) == 3
    inbox = (await _mailboxes(engine, account_id))["INBOX"]
    assert (inbox.gmail_label, inbox.uidvalidity, inbox.messages_synced) == ("\\Inbox", None, 0)
    deleted = await _changes(engine, account_id, "message.deleted")
    assert [change["message_id"] for change in deleted] == [str(before[0][1].id)]


async def test_labels_stay_null_on_other_servers(
    engine: SyncEngine, client: httpx.AsyncClient, auth: dict[str, str], tenant_id: str
) -> None:
    inbox = FakeMailbox(uidvalidity=11)
    inbox.add(make_message(1)[1], labels=["\\Inbox"])  # not sent: no X-GM-EXT-1
    async with ScriptedImapServer(
        capabilities="IMAP4rev1 CONDSTORE", mailboxes={"INBOX": inbox}
    ) as server:
        account_id = await register_account(client, auth, server)
        await engine.sync_account(tenant_id, account_id)
        assert not any("X-GM" in command for command in server.commands)

    ((_, row),) = await _rows(engine, account_id)
    assert (row.labels, row.gm_message_id, row.gm_thread_id) == (None, None, None)
    assert (await _mailboxes(engine, account_id))["INBOX"].gmail_label is None


async def test_rows_stored_before_labels_were_fetched_are_backfilled(
    engine: SyncEngine, client: httpx.AsyncClient, auth: dict[str, str], tenant_id: str
) -> None:
    all_mail = _all_mail()
    layout = gmail_layout(all_mail, labels=["Work", "Muy Importante", "工作"])
    async with ScriptedImapServer(capabilities=GMAIL_CAPABILITIES, mailboxes=layout) as server:
        account_id = await register_account(client, auth, server)
        await engine.sync_account(tenant_id, account_id)
        before = await _rows(engine, account_id)
        # As an earlier mailsvc stored them: no labels, no Gmail message id.
        async with engine.sessionmaker.begin() as session:
            await session.execute(
                update(Message)
                .where(Message.account_id == account_id)
                .values(labels=None, gm_message_id=None)
            )
        server.commands.clear()
        # Nothing changed on the server (STATUS says so): the backfill runs anyway.
        report = await engine.sync_account(tenant_id, account_id)
        fetches = [c for c in server.commands if c.startswith("UID FETCH")]
        server.commands.clear()
        await engine.sync_account(tenant_id, account_id)  # done once, not every pass
        later = [c for c in server.commands if c.startswith(("UID FETCH", "SELECT"))]

    assert fetches == ["UID FETCH 1:* (UID FLAGS X-GM-LABELS X-GM-MSGID X-GM-THRID)"]
    assert later == []
    after = await _rows(engine, account_id)
    assert [(m.id, m.labels, m.gm_message_id) for _, m in after] == [
        (m.id, m.labels, m.gm_message_id) for _, m in before
    ]
    assert report.updated == 3
    # The labels are not news: no message.updated for them.
    assert await _changes(engine, account_id, "message.updated") == []
