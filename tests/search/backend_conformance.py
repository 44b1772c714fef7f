"""The conformance mailbox against a search backend directly, without IMAP or HTTP.

`conformance.MAILBOX` becomes `SearchDocument`s (fixed ids per message and per
mailbox), each case's search becomes the `MessageFilter` that the message service
(`message/service.py`, `_filters` and `_mailboxes`) would build from it, and
`search_keys` pages through `backend.search` to the end. Any backend that implements
`search.backend.SearchBackend` can be run through it.
"""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, time
from email.utils import getaddresses

from sqlalchemy.ext.asyncio import AsyncSession

from mailsvc.search.backend import Address, Hit, SearchBackend, SearchDocument
from mailsvc.search.filter import MessageFilter, Order, Position
from mailsvc.search.query import parse_query
from tests.search.conformance import MAILBOX, PROBE_WORD, MailRecord

PAGE_SIZE = 10  # small, so that most searches page at least once

_NAMESPACE = uuid.UUID("6d0c3b8e-4f7a-4d2b-9a51-2f0d8c1e7a33")
ACCOUNT_ID = uuid.uuid5(_NAMESPACE, "account")

MAILBOX_ROLES = {
    "INBOX": "inbox",
    "Sent": "sent",
    "Drafts": "drafts",
    "Trash": "trash",
    "Junk": "junk",
    "Archive": "archive",
    "Projects": None,  # a label: found by name only
}
"""Each mailbox of `conformance.MAILBOX` and its role (`models.mailbox.MAILBOX_ROLES`)."""

MAILBOX_IDS = {name: uuid.uuid5(_NAMESPACE, f"mailbox/{name}") for name in MAILBOX_ROLES}
MESSAGE_IDS = {record.key: uuid.uuid5(_NAMESPACE, f"message/{record.key}") for record in MAILBOX}
KEYS = {message_id: key for key, message_id in MESSAGE_IDS.items()}
"""Message id -> `MailRecord.key`."""


def _addresses(*headers: str) -> tuple[Address, ...]:
    return tuple(
        Address(name=name or None, address=address)
        for name, address in getaddresses([header for header in headers if header])
    )


def search_document(record: MailRecord) -> SearchDocument:
    """The document the indexer would read from the row this record is stored as."""
    return SearchDocument(
        id=MESSAGE_IDS[record.key],
        account_id=ACCOUNT_ID,
        mailbox_id=MAILBOX_IDS[record.mailbox],
        thread_id=uuid.uuid5(_NAMESPACE, f"thread/{record.key}"),
        received_at=record.received.astimezone(UTC),
        seen=not record.unread,
        flagged=record.starred,
        has_attachments=record.attachment,
        subject=record.subject,
        from_=_addresses(record.sender),
        to=_addresses(record.to, record.cc, record.bcc),
        reply_to=_addresses(record.reply_to),
        # The text part as test_conformance.py sends it.
        body=f"{record.body}\n\n{PROBE_WORD}\n",
    )


async def index_mailbox(backend: SearchBackend, session: AsyncSession, tenant_id: str) -> None:
    """Build the tenant's index of the whole mailbox, as a rebuild would."""
    await backend.reset(session, tenant_id)
    await backend.write(
        session, tenant_id, documents=[search_document(record) for record in MAILBOX], removed=[]
    )
    await backend.mark_ready(session, tenant_id)


def message_filter(q: str, *, today: date | None = None) -> MessageFilter:
    """The filter the message service builds for `GET /api/messages?q=...`."""
    query = parse_query(q, today=today)
    mailbox_ids: tuple[uuid.UUID, ...] | None = None
    if query.mailbox_role is not None:
        mailbox_ids = tuple(
            MAILBOX_IDS[name] for name, role in MAILBOX_ROLES.items() if role == query.mailbox_role
        )
    elif query.mailbox is not None:
        mailbox_ids = tuple(
            MAILBOX_IDS[name] for name in MAILBOX_ROLES if name.lower() == query.mailbox.lower()
        )
    return MessageFilter(
        mailbox_ids=mailbox_ids,
        unread=query.unread,
        flagged=query.flagged,
        has_attachments=query.has_attachment,
        from_=query.from_,
        to=query.to,
        subject=query.subject,
        not_from=query.excluded_from,
        not_to=query.excluded_to,
        not_subject=query.excluded_subject,
        received_after=_day_start(query.after),
        received_before=_day_start(query.before),
        text=query.text,
    )


def _day_start(day: date | None) -> datetime | None:
    return None if day is None else datetime.combine(day, time.min, tzinfo=UTC)


async def all_hits(
    backend: SearchBackend,
    tenant_id: str,
    filters: MessageFilter,
    *,
    order: Order,
    page_size: int = PAGE_SIZE,
) -> list[Hit]:
    """Every hit of the search, page after page, each page continuing after the last."""
    hits: list[Hit] = []
    after: Position | None = None
    while True:
        page = await backend.search(tenant_id, filters, order=order, after=after, limit=page_size)
        assert len(page.hits) <= page_size
        hits += page.hits
        if not page.more:
            break
        assert page.hits, "a page with more to come has hits"
        after = Position(page.hits[-1].key, page.hits[-1].message_id)
    ids = [hit.message_id for hit in hits]
    assert len(set(ids)) == len(ids), "a message came back twice"
    return hits


async def search_keys(
    backend: SearchBackend, tenant_id: str, filters: MessageFilter, *, order: Order
) -> list[str]:
    """The `MailRecord.key`s of every hit, in page order."""
    hits = await all_hits(backend, tenant_id, filters, order=order)
    return [KEYS[hit.message_id] for hit in hits]
