"""Message rows for the search queue and indexer tests, stored straight into PostgreSQL.

No IMAP server is involved: the queue triggers and the indexer only read the
`messages` rows, so the tests write those rows as the sync would (one multi-row
INSERT per batch) and change them as flag changes, moves and expunges do.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from mailsvc.account.repository import AccountRepository
from mailsvc.kit.ids import uuid7
from mailsvc.kit.repository import TenantScope
from mailsvc.mirror.repository import MailboxRepository
from mailsvc.models import Mailbox, Message, SearchQueueEntry
from tests.fixtures.mail import parked_account

# A word in every stored message's subject: searching it finds every indexed message.
PROBE = "quokka"


@dataclass
class StoredTenant:
    """A tenant with one account and its mailboxes, and the messages stored so far."""

    id: str
    account_id: uuid.UUID
    mailbox_ids: dict[str, uuid.UUID]
    next_uid: dict[uuid.UUID, int] = field(default_factory=dict)


async def new_tenant(
    sessionmaker: async_sessionmaker[AsyncSession],
    *,
    mailboxes: Sequence[str] = ("INBOX", "Archive"),
    synced: bool = False,
) -> StoredTenant:
    """A tenant of its own with an account and `mailboxes`; `synced`: each has
    completed a sync pass (the account's first mirror is complete)."""
    tenant_id = f"search-{uuid.uuid4().hex[:12]}"
    async with sessionmaker.begin() as session:
        account = await AccountRepository(session, tenant_id).add(parked_account())
        ids = {}
        for name in mailboxes:
            mailbox = await MailboxRepository(session, tenant_id).add(
                Mailbox(
                    account_id=account.id,
                    name=name,
                    sync_state="synced" if synced else "pending",
                    last_synced_at=datetime.now(UTC) if synced else None,
                )
            )
            ids[name] = mailbox.id
    return StoredTenant(tenant_id, account.id, ids)


def _address(name: str | None, address: str) -> dict[str, Any]:
    return {"name": name, "address": address}


async def store(
    sessionmaker: async_sessionmaker[AsyncSession],
    tenant: StoredTenant,
    count: int,
    *,
    mailbox: str = "INBOX",
    body: str = "hello there",
    flags: Sequence[str] = (),
) -> list[uuid.UUID]:
    """Store `count` messages in one INSERT (as a sync batch does); their ids."""
    mailbox_id = tenant.mailbox_ids[mailbox]
    first_uid = tenant.next_uid.get(mailbox_id, 1)
    tenant.next_uid[mailbox_id] = first_uid + count
    start = datetime(2026, 1, 1, tzinfo=UTC)
    rows = [
        {
            "id": uuid7(),
            "account_id": tenant.account_id,
            "mailbox_id": mailbox_id,
            "uid": uid,
            "uidvalidity": 1,
            "internal_date": start + timedelta(minutes=uid),
            "size": 1000,
            "subject": f"{PROBE} number {uid}",
            "from_": [_address("Alice Example", "alice@acme.test")],
            "to": [_address(None, "bob@acme.test")],
            "cc": [_address("Carol", "carol@acme.test")],
            "text_body": body,
            "flags": list(flags),
        }
        for uid in range(first_uid, first_uid + count)
    ]
    async with sessionmaker.begin() as session:
        await session.execute(TenantScope(session, tenant.id).insert(Message, rows))
    return [row["id"] for row in rows]


async def update_messages(
    sessionmaker: async_sessionmaker[AsyncSession],
    tenant: StoredTenant,
    message_ids: Sequence[uuid.UUID],
    **values: Any,
) -> None:
    """One UPDATE of these messages (a flag change, a move, a MODSEQ bump)."""
    async with sessionmaker.begin() as session:
        await session.execute(
            TenantScope(session, tenant.id)
            .update(Message)
            .where(Message.id.in_(message_ids))
            .values(**values)
        )


async def delete_messages(
    sessionmaker: async_sessionmaker[AsyncSession],
    tenant: StoredTenant,
    message_ids: Sequence[uuid.UUID],
) -> None:
    """One DELETE of these messages (an expunge)."""
    async with sessionmaker.begin() as session:
        await session.execute(
            TenantScope(session, tenant.id).delete(Message).where(Message.id.in_(message_ids))
        )


async def queued(
    sessionmaker: async_sessionmaker[AsyncSession], tenant: StoredTenant
) -> list[uuid.UUID]:
    """The message ids of the tenant's queue rows, oldest first."""
    async with sessionmaker() as session:
        rows = await session.scalars(
            TenantScope(session, tenant.id)
            .select(SearchQueueEntry.message_id)
            .order_by(SearchQueueEntry.seq)
        )
        return list(rows)


async def stored_ids(
    sessionmaker: async_sessionmaker[AsyncSession], tenant: StoredTenant
) -> set[uuid.UUID]:
    async with sessionmaker() as session:
        return set(await session.scalars(TenantScope(session, tenant.id).select(Message.id)))


async def clear_queue(sessionmaker: async_sessionmaker[AsyncSession], tenant: StoredTenant) -> None:
    async with sessionmaker.begin() as session:
        await session.execute(TenantScope(session, tenant.id).delete(SearchQueueEntry))
