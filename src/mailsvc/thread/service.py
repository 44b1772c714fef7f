"""Reading threads for the API (thread/service.py assigns them during sync)."""

from __future__ import annotations

import json
import uuid
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from mailsvc.errors import NotFoundError
from mailsvc.kit.pagination import encode_cursor, read_cursor
from mailsvc.kit.reads import ReadPool
from mailsvc.message.bodies import summary_from_row
from mailsvc.message.repository import MessageRepository
from mailsvc.message.schemas import AddressOut
from mailsvc.message.service import ListRequest, MessageService
from mailsvc.models import Thread
from mailsvc.search.backend import SearchBackend
from mailsvc.thread import schemas
from mailsvc.thread.read_repository import ThreadReads
from mailsvc.thread.repository import ThreadRepository

# A thread page shows the whole conversation; past this, page its messages through
# `GET /api/messages?thread_id=`.
THREAD_MESSAGES_LIMIT = 500
# A thread search keeps the threads of this many newest matching messages: threads
# sort by their last activity, so these are the ones its first pages show.
THREAD_SEARCH_MESSAGES = 2_000


def _summary(thread: Thread) -> schemas.ThreadSummary:
    return schemas.ThreadSummary(
        id=thread.id,
        account_id=thread.account_id,
        subject=thread.subject,
        participants=[
            AddressOut(name=p.get("name"), address=p.get("address") or "")
            for p in thread.participants or ()
        ],
        message_count=thread.message_count,
        unread_count=thread.unread_count,
        last_message_at=thread.last_message_at,
    )


class ThreadService:
    """The thread list of one tenant, on the raw pool (kit/reads.py). Never writes."""

    def __init__(
        self, reads: ReadPool, tenant_id: str, *, search: SearchBackend | None = None
    ) -> None:
        self._messages = MessageService(reads, tenant_id, search=search)
        self._threads = ThreadReads(reads, tenant_id)

    async def page(self, request: ListRequest) -> bytes:
        """One `ThreadPage` as its JSON body; PostgreSQL builds the items."""
        filters = await self._messages.filters(request)
        after = read_cursor(
            request.cursor,
            lambda raw: (datetime.fromisoformat(str(raw["t"])), uuid.UUID(str(raw["i"]))),
        )
        matching: list[uuid.UUID] | None = None
        if filters.searches:
            # The page query checks these ids against the tenant and the plain filters.
            matching = await self._messages.matching_ids(filters, limit=THREAD_SEARCH_MESSAGES)
        rows = await self._threads.page(
            filters, limit=request.limit + 1, after=after, message_ids=matching
        )
        next_cursor = None
        if len(rows) > request.limit:
            last = rows[request.limit - 1]
            next_cursor = encode_cursor({"t": last[1].isoformat(), "i": str(last[2])})
        items = ",".join(row[0] for row in rows[: request.limit])
        return f'{{"items":[{items}],"next_cursor":{json.dumps(next_cursor)}}}'.encode()


async def thread_out(
    session: AsyncSession, tenant_id: str, thread_id: uuid.UUID
) -> schemas.ThreadOut:
    """One thread of the tenant with its messages, oldest first (404 if not there)."""
    thread = await ThreadRepository(session, tenant_id).get(thread_id)
    if thread is None:
        raise NotFoundError("thread not found", code="thread_not_found")
    rows = await MessageRepository(session, tenant_id).thread_messages(
        thread.id, limit=THREAD_MESSAGES_LIMIT
    )
    return schemas.ThreadOut(
        **_summary(thread).model_dump(), messages=[summary_from_row(r) for r in rows]
    )
