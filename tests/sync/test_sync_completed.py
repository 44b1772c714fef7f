"""`sync.completed` marks passes that changed something, and an account's first pass."""

from __future__ import annotations

import asyncio
from typing import Any

from sqlalchemy import select

from mailsvc.models import Change
from mailsvc.sync.engine import SyncEngine
from tests.fixtures import imap_client
from tests.fixtures.dovecot import DovecotServer
from tests.fixtures.mail import SyncTarget
from tests.sync.messages import make_message


async def _completed(engine: SyncEngine, target: SyncTarget) -> list[dict[str, Any]]:
    async with engine.sessionmaker() as session:
        payloads = await session.scalars(
            select(Change.payload)
            .where(
                Change.tenant_id == target.tenant_id,
                Change.account_id == target.account_id,
                Change.type == "sync.completed",
            )
            .order_by(Change.seq)
        )
        return [
            {k: v for k, v in payload.items() if k != "account_id"} for payload in payloads.all()
        ]


async def test_passes_that_change_nothing_add_no_event(
    engine: SyncEngine, target: SyncTarget, dovecot: DovecotServer
) -> None:
    messages = [make_message(n)[1] for n in range(3)]
    await asyncio.to_thread(imap_client.append, dovecot, target.user, "INBOX", messages)
    await engine.sync_account(target.tenant_id, target.account_id)
    first = {"new_messages": 3, "updated": 0, "deleted": 0}
    assert await _completed(engine, target) == [first]

    # Unchanged on the server: a pass of every mailbox, and a full SELECT of INBOX.
    report = await engine.sync_account(target.tenant_id, target.account_id)
    assert not report.changed
    await engine.sync_account(target.tenant_id, target.account_id, mailboxes=["INBOX"])
    assert await _completed(engine, target) == [first]

    await asyncio.to_thread(
        imap_client.run, dovecot, target.user, "INBOX", ("STORE", "2", "+FLAGS", "(\\Flagged)")
    )
    await engine.sync_account(target.tenant_id, target.account_id)
    assert await _completed(engine, target) == [
        first,
        {"new_messages": 0, "updated": 1, "deleted": 0},
    ]


async def test_the_first_pass_of_an_empty_account_is_announced_once(
    engine: SyncEngine, target: SyncTarget
) -> None:
    await engine.sync_account(target.tenant_id, target.account_id)
    await engine.sync_account(target.tenant_id, target.account_id)
    assert await _completed(engine, target) == [{"new_messages": 0, "updated": 0, "deleted": 0}]
