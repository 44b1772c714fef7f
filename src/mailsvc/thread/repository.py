"""SQL for threads: lookups by Message-ID, merges, and the per-thread summary."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

from sqlalchemy import (
    any_,
    cast,
    literal_column,
    tuple_,
)
from sqlalchemy.dialects.postgresql import ARRAY, UUID
from sqlalchemy.sql.expression import ColumnElement

from mailsvc.kit.repository import TenantRepository
from mailsvc.message.repository import message_conditions
from mailsvc.models import Message, Thread
from mailsvc.search.filter import MessageFilter

_EMPTY_JSON_ARRAY: ColumnElement[Any] = literal_column("'[]'::jsonb")


class ThreadRepository(TenantRepository):
    async def page(
        self,
        filters: MessageFilter,
        *,
        limit: int,
        after: tuple[datetime, uuid.UUID] | None,
        message_ids: Sequence[uuid.UUID] | None = None,
    ) -> Sequence[Thread]:
        """Threads with a message matching `filters`, newest activity first (keyset).

        The plain fields of `filters` are checked here; a search's full-text part
        comes as `message_ids`, the backend's confirmed hits.
        """
        where: list[ColumnElement[bool]] = []
        if filters.account_id is not None:
            where.append(Thread.account_id == filters.account_id)
        if filters.unread is True:
            where.append(Thread.unread_count > 0)
        narrowing = replace(filters, account_id=None, unread=None)
        if narrowing != MessageFilter() or filters.unread is False or message_ids is not None:
            if filters.unread is False:
                narrowing = replace(narrowing, unread=False)
            matching = self.scoped.select(Message.thread_id).where(*message_conditions(narrowing))
            if message_ids is not None:
                # One array parameter: up to 2,000 ids, and one statement text for any count.
                ids = cast(list(message_ids), ARRAY(UUID(as_uuid=True)))
                matching = matching.where(Message.id == any_(ids))
            if filters.account_id is not None:
                matching = matching.where(Message.account_id == filters.account_id)
            where.append(Thread.id.in_(matching))
        if after is not None:
            where.append(tuple_(Thread.last_message_at, Thread.id) < tuple_(*after))
        result = await self.session.scalars(
            self.scoped.select(Thread)
            .where(*where)
            .order_by(Thread.last_message_at.desc(), Thread.id.desc())
            .limit(limit)
        )
        return list(result.all())

    async def get(self, thread_id: uuid.UUID) -> Thread | None:
        found: Thread | None = await self.session.scalar(
            self.scoped.select(Thread).where(Thread.id == thread_id)
        )
        return found
