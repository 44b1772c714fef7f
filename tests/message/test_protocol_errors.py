"""A message action whose server answer cannot be read is a 502, not a 500."""

from __future__ import annotations

import httpx
from sqlalchemy import select

from mailsvc.models import Message
from mailsvc.sync.engine import SyncEngine
from tests.fixtures.imap_script import FakeMailbox, ScriptedImapServer, register_account
from tests.sync.messages import make_message


async def test_unreadable_select_answer_is_a_bad_gateway_and_changes_nothing(
    engine: SyncEngine, client: httpx.AsyncClient, auth: dict[str, str], tenant_id: str
) -> None:
    inbox = FakeMailbox(uidvalidity=31)
    inbox.add(make_message(3100)[1])
    async with ScriptedImapServer(
        capabilities="IMAP4rev1 UIDPLUS", mailboxes={"INBOX": inbox}
    ) as server:
        account_id = await register_account(client, auth, server)
        await engine.sync_account(tenant_id, account_id)
        async with engine.sessionmaker() as session:
            message = await session.scalar(select(Message).where(Message.account_id == account_id))
        assert message is not None
        inbox.garbled["SELECT"] = "1:*"

        response = await client.patch(
            f"/api/messages/{message.id}", json={"seen": True}, headers=auth
        )

    assert response.status_code == 502, response.text
    problem = response.json()
    assert problem["code"] == "imap_unreadable"
    assert "VANISHED" in problem["detail"]
    async with engine.sessionmaker() as session:
        assert await session.scalar(select(Message.flags).where(Message.id == message.id)) == []
