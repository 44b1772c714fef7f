"""Reading threads for the API (thread/service.py assigns them during sync)."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from mailsvc.errors import NotFoundError
from mailsvc.kit.pagination import encode_cursor, read_cursor
from mailsvc.message.repository import MessageRepository
from mailsvc.message.schemas import AddressOut
from mailsvc.message.service import ListRequest, MessageService, summary_from_row
from mailsvc.models import Thread
from mailsvc.search.backend import SearchBackend
from mailsvc.search.filter import MessageFilter
from mailsvc.thread import schemas
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
    """Threads of one tenant. Never commits."""

    def __init__(
        self, session: AsyncSession, tenant_id: str, *, search: SearchBackend | None = None
    ) -> None:
        self._session = session
        self._tenant_id = tenant_id
        self._threads = ThreadRepository(session, tenant_id)
        self._search = search

    async def page(self, request: ListRequest) -> schemas.ThreadPage:
        messages = MessageService(self._session, self._tenant_id, search=self._search)
        filters = await messages.filters(request)
        after = read_cursor(
            request.cursor,
            lambda raw: (datetime.fromisoformat(str(raw["t"])), uuid.UUID(str(raw["i"]))),
        )
        matching: list[uuid.UUID] | None = None
        if filters.searches:
            # The page query checks these ids against the tenant and the plain filters.
            matching = await messages.matching_ids(filters, limit=THREAD_SEARCH_MESSAGES)
        threads = await self._threads.page(
            filters, limit=request.limit + 1, after=after, message_ids=matching
        )
        next_cursor = None
        if len(threads) > request.limit:
            last = threads[request.limit - 1]
            next_cursor = encode_cursor({"t": last.last_message_at.isoformat(), "i": str(last.id)})
        return schemas.ThreadPage(
            items=[_summary(t) for t in threads[: request.limit]], next_cursor=next_cursor
        )

    async def get(self, thread_id: uuid.UUID) -> schemas.ThreadOut:
        thread = await self._threads.get(thread_id)
        if thread is None:
            raise NotFoundError("thread not found", code="thread_not_found")
        rows = await MessageRepository(self._session, self._tenant_id).page(
            MessageFilter(thread_id=thread.id), limit=THREAD_MESSAGES_LIMIT, after=None,
            order="oldest",
        )  # fmt: skip
        return schemas.ThreadOut(
            **_summary(thread).model_dump(), messages=[summary_from_row(r) for r in rows]
        )
