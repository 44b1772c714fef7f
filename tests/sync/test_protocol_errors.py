"""A server answer that cannot be read fails its mailbox, never the account's pass.

The server is `tests.fixtures.imap_script`: a real IMAP server on a socket that
answers one command of one mailbox with a malformed UID set.
"""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from mailsvc.models import Mailbox, Message
from mailsvc.sync.engine import SyncEngine
from tests.fixtures.imap_script import FakeMailbox, ScriptedImapServer, register_account
from tests.sync.messages import make_message

QRESYNC_SERVER = "IMAP4rev1 ENABLE CONDSTORE QRESYNC"
# No CONDSTORE: deletions are found by a UID SEARCH diff, which LIST-STATUS may skip.
SEARCH_SERVER = "IMAP4rev1 ESEARCH LIST-STATUS"


def _mailbox(uidvalidity: int, count: int) -> FakeMailbox:
    mailbox = FakeMailbox(uidvalidity=uidvalidity)
    for index in range(count):
        mailbox.add(make_message(uidvalidity * 100 + index)[1])
    return mailbox


async def mailboxes(engine: SyncEngine, account_id: uuid.UUID) -> dict[str, Mailbox]:
    async with engine.sessionmaker() as session:
        rows = await session.scalars(select(Mailbox).where(Mailbox.account_id == account_id))
        return {row.name: row for row in rows}


async def stored(engine: SyncEngine, account_id: uuid.UUID) -> dict[str, dict[int, list[str]]]:
    """Mailbox name -> UID -> flags of every stored message."""
    async with engine.sessionmaker() as session:
        rows = await session.execute(
            select(Mailbox.name, Message.uid, Message.flags)
            .join(Message, Message.mailbox_id == Mailbox.id)
            .where(Message.account_id == account_id)
        )
        result: dict[str, dict[int, list[str]]] = {}
        for name, uid, flags in rows.all():
            result.setdefault(name, {})[int(uid)] = list(flags)
        return result


async def status_of(
    client: httpx.AsyncClient, auth: dict[str, str], account_id: uuid.UUID
) -> dict[str, dict[str, Any]]:
    response = await client.get(f"/api/sync/status/{account_id}", headers=auth)
    assert response.status_code == 200, response.text
    return {mailbox["name"]: mailbox for mailbox in response.json()["mailboxes"]}


# "1:abc" used to be read as "1" (UID 1 deleted), "1:*" raised out of the pass.
@pytest.mark.parametrize(("garbled_in", "uid_set"), [("SELECT", "1:abc"), ("UID FETCH", "1:*")])
async def test_unreadable_vanished_fails_only_its_mailbox(
    engine: SyncEngine, client: httpx.AsyncClient, auth: dict[str, str], tenant_id: str,
    garbled_in: str, uid_set: str,
) -> None:  # fmt: skip
    inbox, archive, sent = _mailbox(11, 3), _mailbox(12, 2), _mailbox(13, 1)
    boxes = {"INBOX": inbox, "Archive": archive, "Sent": sent}
    async with ScriptedImapServer(capabilities=QRESYNC_SERVER, mailboxes=boxes) as server:
        account_id = await register_account(client, auth, server)
        await engine.sync_account(tenant_id, account_id)
        before = (await mailboxes(engine, account_id))["INBOX"]
        assert before.sync_state == "synced"
        assert before.highestmodseq == inbox.highestmodseq

        # INBOX (synced first) changes and answers its resync badly; the others
        # have new mail, to be fetched on the same connection after the failure.
        inbox.set_flags(1, "\\Seen")
        inbox.add(make_message(1199)[1])
        inbox.garbled[garbled_in] = uid_set
        archive.add(make_message(1299)[1])
        sent.add(make_message(1399)[1])
        report = await engine.sync_account(tenant_id, account_id)

        rows = await stored(engine, account_id)
        assert set(rows["Archive"]) == {1, 2, 3}
        assert set(rows["Sent"]) == {1, 2}
        after = await mailboxes(engine, account_id)
        assert after["Archive"].sync_state == after["Sent"].sync_state == "synced"
        failed = after["INBOX"]
        assert failed.sync_state == "error"
        assert failed.sync_error is not None
        assert "VANISHED" in failed.sync_error
        assert uid_set in failed.sync_error
        assert failed.sync_error_at is not None
        # Nothing stored is lost (UID 1 was not taken as vanished) and the cursor
        # vouches for nothing unread: the flag change is fetched again next time.
        assert rows["INBOX"][1] == []
        assert failed.highestmodseq == before.highestmodseq
        if garbled_in == "SELECT":
            assert set(rows["INBOX"]) == {1, 2, 3}
            assert failed.uidnext == before.uidnext
        else:  # the new message came before the flag fetch, in its own transaction
            assert set(rows["INBOX"]) == {1, 2, 3, 4}
            assert failed.uidnext == 5
        shown = await status_of(client, auth, account_id)
        assert shown["INBOX"]["sync_state"] == "error"
        assert "VANISHED" in shown["INBOX"]["sync_error"]
        assert shown["Archive"]["sync_state"] == "synced"
        assert report.failed == 1
        assert server.logins == 2  # one connection per pass: no reconnect after the error

        inbox.garbled.clear()
        await engine.sync_account(tenant_id, account_id)

    rows = await stored(engine, account_id)
    assert rows["INBOX"] == {1: ["\\Seen"], 2: [], 3: [], 4: []}
    healed = (await mailboxes(engine, account_id))["INBOX"]
    assert (healed.sync_state, healed.sync_error, healed.sync_error_at) == ("synced", None, None)
    assert healed.highestmodseq == inbox.highestmodseq
    assert (await status_of(client, auth, account_id))["INBOX"]["sync_error"] is None


async def test_unreadable_search_answer_fails_only_its_mailbox(
    engine: SyncEngine, client: httpx.AsyncClient, auth: dict[str, str], tenant_id: str
) -> None:
    inbox, archive, sent = _mailbox(21, 2), _mailbox(22, 3), _mailbox(23, 1)
    boxes = {"INBOX": inbox, "Archive": archive, "Sent": sent}
    async with ScriptedImapServer(capabilities=SEARCH_SERVER, mailboxes=boxes) as server:
        account_id = await register_account(client, auth, server)
        await engine.sync_account(tenant_id, account_id)
        before = (await mailboxes(engine, account_id))["Archive"]
        assert before.sync_state == "synced"

        # Fewer messages than stored: Archive asks which UIDs remain, and the
        # answer is unreadable. INBOX comes before it, Sent after it.
        archive.expunge(2)
        archive.garbled["UID SEARCH"] = "1:*"
        inbox.add(make_message(2199)[1])
        sent.add(make_message(2399)[1])
        report = await engine.sync_account(tenant_id, account_id)

        rows = await stored(engine, account_id)
        assert set(rows["INBOX"]) == {1, 2, 3}
        assert set(rows["Sent"]) == {1, 2}
        assert set(rows["Archive"]) == {1, 2, 3}  # no deletion from an unread answer
        after = await mailboxes(engine, account_id)
        assert after["INBOX"].sync_state == after["Sent"].sync_state == "synced"
        failed = after["Archive"]
        assert failed.sync_state == "error"
        assert failed.sync_error is not None
        assert "ESEARCH" in failed.sync_error
        assert "1:*" in failed.sync_error
        assert failed.sync_error_at is not None
        assert failed.uidnext == before.uidnext
        shown = await status_of(client, auth, account_id)
        assert shown["Archive"]["sync_state"] == "error"
        assert "ESEARCH" in shown["Archive"]["sync_error"]
        assert shown["Sent"]["sync_state"] == "synced"
        assert report.failed == 1

        # LIST-STATUS now matches what the failed pass recorded; the mailbox must
        # still be selected, or the deletion and the error would stay forever.
        archive.garbled.clear()
        await engine.sync_account(tenant_id, account_id)

    assert set((await stored(engine, account_id))["Archive"]) == {1, 3}
    healed = (await mailboxes(engine, account_id))["Archive"]
    assert (healed.sync_state, healed.sync_error, healed.sync_error_at) == ("synced", None, None)
