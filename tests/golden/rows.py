"""Writing the fixed mailbox of `tests.golden.mailbox` into PostgreSQL and Redis.

Rows are built from the specs with every column that reaches a response set
explicitly (ids, timestamps, counters), so nothing depends on `uuid7()`, `now()` or
the sync engine. Thread summaries and mailbox counters are computed here from the
messages, the way the sync keeps them.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from datetime import timedelta

import redis.asyncio as aioredis
from sqlalchemy import delete
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from mailsvc.account.credentials import seal_password
from mailsvc.kit.crypto import SecretBox
from mailsvc.models import (
    Account,
    Attachment,
    Mailbox,
    Message,
    MessageSearch,
    SearchIndexStateRow,
    SearchQueueEntry,
    Thread,
)
from mailsvc.sync.idle_status import idle_status_key
from tests.golden.mailbox import (
    ACCOUNT,
    IDLE_MAILBOXES,
    IDLE_SINCE,
    LAST_SYNC,
    MAILBOXES,
    MAILS,
    OTHER_ACCOUNT,
    OTHER_INBOX,
    OTHER_MAILS,
    OTHER_TENANT,
    OTHER_THREAD,
    SEEN,
    STORED_AT,
    TENANT,
    THREADS,
    Address,
    Mail,
    MailboxSpec,
    at,
)


def _snippet(mail: Mail) -> str | None:
    if mail.snippet is not None:
        return mail.snippet
    return " ".join(mail.text.split())[:200] if mail.text else None


def _size(mail: Mail) -> int:
    bodies = len((mail.text or "").encode()) + len((mail.html or "").encode())
    return 900 + bodies + sum(part.size * 4 // 3 for part in mail.attachments)


def _account(tenant_id: str, account_id: uuid.UUID, email: str, box: SecretBox) -> Account:
    secrets = {
        purpose: seal_password(
            box,
            tenant_id=tenant_id,
            account_id=account_id,
            purpose=purpose,
            password=f"golden-{purpose}-password",
        )
        for purpose in ("imap", "smtp")
    }
    return Account(
        id=account_id,
        tenant_id=tenant_id,
        email=email,
        display_name=email.split("@")[0].title(),
        # No server answers there: the fixture's accounts are never synced.
        imap_host="imap.golden.invalid",
        imap_port=993,
        imap_security="tls",
        imap_username=email,
        imap_secret=secrets["imap"],
        smtp_host="smtp.golden.invalid",
        smtp_port=465,
        smtp_security="tls",
        smtp_username=email,
        smtp_secret=secrets["smtp"],
        state="connected",
        last_error="IMAP connection reset by peer; reconnected",
        last_error_at=at("2026-03-09T23:10:00+00:00"),
        state_changed_at=at("2026-03-09T23:10:05+00:00"),
        # Announced already, so indexing announces nothing (no `account.indexed` event).
        indexed_at=STORED_AT,
        created_at=STORED_AT,
        updated_at=STORED_AT,
    )


def _uids(mails: Sequence[Mail]) -> dict[uuid.UUID, int]:
    """Each message's UID: in receipt order within its mailbox, from 101."""
    uids: dict[uuid.UUID, int] = {}
    for spec in {mail.mailbox for mail in mails}:
        inside = sorted((m for m in mails if m.mailbox == spec), key=lambda m: m.received)
        uids.update({mail.id: 101 + index for index, mail in enumerate(inside)})
    return uids


def _mailbox(spec: MailboxSpec, account_id: uuid.UUID, mails: Sequence[Mail]) -> Mailbox:
    inside = [mail for mail in mails if mail.mailbox == spec]
    unseen = sum(SEEN not in mail.flags for mail in inside)
    return Mailbox(
        id=spec.id,
        tenant_id=spec.tenant_id,
        account_id=account_id,
        name=spec.name,
        delimiter="/",
        special_use=spec.role,
        attributes=list(spec.attributes),
        subscribed=spec.selectable,
        selectable=spec.selectable,
        uidvalidity=spec.uidvalidity,
        uidnext=None if spec.uidvalidity is None else 101 + len(inside) + spec.missing,
        highestmodseq=None if spec.uidvalidity is None else 5_000 + len(inside),
        messages_total=len(inside) + spec.missing,
        messages_unseen=unseen,
        messages_synced=len(inside),
        sync_state=spec.sync_state,
        sync_started_at=None if spec.uidvalidity is None else LAST_SYNC - timedelta(seconds=4),
        last_synced_at=LAST_SYNC if spec.sync_state == "synced" else None,
        sync_error=spec.sync_error,
        sync_error_at=LAST_SYNC if spec.sync_error else None,
        created_at=STORED_AT,
        updated_at=LAST_SYNC,
    )


def _thread(
    thread_id: uuid.UUID, tenant_id: str, account_id: uuid.UUID, mails: Sequence[Mail]
) -> Thread:
    """A thread's summary as the sync keeps it: counts, last activity, and distinct
    senders in order of first appearance."""
    ordered = sorted(mails, key=lambda m: m.received)
    participants: list[Address] = []
    for mail in ordered:
        participants += [a for a in mail.from_ if a not in participants]
    first_subject = ordered[0].subject
    return Thread(
        id=thread_id,
        tenant_id=tenant_id,
        account_id=account_id,
        subject=first_subject,
        participants=participants,
        message_count=len(ordered),
        unread_count=sum(SEEN not in mail.flags for mail in ordered),
        last_message_at=ordered[-1].received_at,
        created_at=ordered[0].received_at,
        updated_at=ordered[-1].received_at,
    )


def _message(mail: Mail, account_id: uuid.UUID, thread_id: uuid.UUID | None, uid: int) -> Message:
    received = mail.received_at
    date = (
        None
        if mail.date_minutes_before is None
        else received - timedelta(minutes=mail.date_minutes_before)
    )
    return Message(
        id=mail.id,
        tenant_id=mail.tenant_id,
        account_id=account_id,
        mailbox_id=mail.mailbox.id,
        uid=uid,
        uidvalidity=mail.mailbox.uidvalidity,
        modseq=4_000 + uid,
        message_id_header=mail.message_id,
        in_reply_to=mail.in_reply_to,
        references=list(mail.references),
        subject=mail.subject,
        from_=list(mail.from_),
        sender=list(mail.sender),
        to=list(mail.to),
        cc=list(mail.cc),
        bcc=list(mail.bcc),
        reply_to=list(mail.reply_to),
        date=date,
        internal_date=received,
        size=_size(mail),
        flags=list(mail.flags),
        thread_id=thread_id,
        snippet=_snippet(mail),
        text_body=mail.text,
        html_body=mail.html,
        has_attachments=any(not part.inline for part in mail.attachments),
        parse_error=mail.parse_error,
        created_at=received + timedelta(minutes=1),
        updated_at=received + timedelta(minutes=1),
    )


def _attachments(mail: Mail) -> list[Attachment]:
    return [
        Attachment(
            id=part.id,
            tenant_id=mail.tenant_id,
            message_id=mail.id,
            section=part.section,
            filename=part.filename,
            content_type=part.content_type,
            encoding=part.encoding,
            size=part.size,
            content_id=part.content_id,
            is_inline=part.inline,
        )
        for part in mail.attachments
    ]


async def _store_tenant(
    session: AsyncSession,
    *,
    account: Account,
    mailboxes: Sequence[MailboxSpec],
    threads: dict[str, uuid.UUID],
    mails: Sequence[Mail],
) -> None:
    # Flushed table by table: each row points at rows of the tables before it.
    session.add(account)
    await session.flush()
    session.add_all([_mailbox(spec, account.id, mails) for spec in mailboxes])
    await session.flush()
    session.add_all(
        [
            _thread(thread_id, account.tenant_id, account.id, [m for m in mails if m.thread == key])
            for key, thread_id in threads.items()
        ]
    )
    await session.flush()
    uids = _uids(mails)
    session.add_all(
        [
            _message(mail, account.id, threads[mail.thread] if mail.thread else None, uids[mail.id])
            for mail in mails
        ]
    )
    await session.flush()
    session.add_all([row for mail in mails for row in _attachments(mail)])


async def store(
    sessionmaker: async_sessionmaker[AsyncSession], box: SecretBox, redis: aioredis.Redis
) -> None:
    """Write both tenants' rows (one transaction), and tenant A's IDLE status."""
    async with sessionmaker.begin() as session:
        await _store_tenant(
            session,
            account=_account(TENANT, ACCOUNT, "ada@golden.test", box),
            mailboxes=MAILBOXES,
            threads=THREADS,
            mails=MAILS,
        )
        await _store_tenant(
            session,
            account=_account(OTHER_TENANT, OTHER_ACCOUNT, "eve@other.test", box),
            mailboxes=(OTHER_INBOX,),
            threads={"other": OTHER_THREAD},
            mails=OTHER_MAILS,
        )
    # What a watcher writes once its IDLE connections are up (mailsvc.sync.idle_status),
    # with a fixed time; no TTL: `remove` deletes it.
    status = {
        "owner": "golden-tests",
        "mailboxes": list(IDLE_MAILBOXES),
        "connected_at": IDLE_SINCE,
    }
    await redis.set(idle_status_key(ACCOUNT), json.dumps(status))


async def remove(sessionmaker: async_sessionmaker[AsyncSession], redis: aioredis.Redis) -> None:
    """Delete everything `store` and indexing wrote for both tenants."""
    tenants = (TENANT, OTHER_TENANT)
    async with sessionmaker.begin() as session:
        # Mailboxes, threads, messages and attachments go with their account (CASCADE).
        await session.execute(delete(Account).where(Account.tenant_id.in_(tenants)))
        for table in (SearchQueueEntry, MessageSearch, SearchIndexStateRow):
            await session.execute(delete(table).where(table.tenant_id.in_(tenants)))
    await redis.delete(idle_status_key(ACCOUNT))
