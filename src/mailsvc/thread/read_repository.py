"""SQL of the thread list on the raw pool (kit/reads.py): PostgreSQL builds each
`ThreadSummary` as JSON text, and the page goes out as those bytes."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime

import asyncpg

from mailsvc.kit.reads import TenantReads, json_time
from mailsvc.message.read_repository import Statement, message_conditions
from mailsvc.search.filter import MessageFilter

# A participant is `{"name", "address"}` as the sync stores it; the model's
# defaults (no name: null, no address: "") are applied here.
_THREAD_ITEM = f"""json_build_object(
    'id', t.id, 'account_id', t.account_id, 'subject', t.subject,
    'participants', (SELECT coalesce(json_agg(json_build_object(
        'name', p.value -> 'name', 'address', coalesce(p.value ->> 'address', ''))
        ORDER BY p.ordinality), '[]')
        FROM jsonb_array_elements(coalesce(t.participants, '[]')) WITH ORDINALITY AS p),
    'message_count', t.message_count, 'unread_count', t.unread_count,
    'last_message_at', {json_time("t.last_message_at")})::text"""


class ThreadReads(TenantReads):
    """The thread list of one tenant, on the raw pool."""

    async def page(
        self,
        filters: MessageFilter,
        *,
        limit: int,
        after: tuple[datetime, uuid.UUID] | None,
        message_ids: Sequence[uuid.UUID] | None = None,
    ) -> list[asyncpg.Record]:
        """Rows (summary JSON text, last activity, id) of the threads with a message
        matching `filters`, newest activity first (keyset).

        The plain fields of `filters` are checked here; a search's full-text part
        comes as `message_ids`, the backend's hits, checked here against the tenant.
        """
        statement = Statement()
        where = ["t.tenant_id = $1"]
        if filters.account_id is not None:
            where.append(f"t.account_id = {statement.value(filters.account_id, 'uuid')}")
        if filters.unread is True:
            where.append("t.unread_count > 0")
        narrowing = replace(filters, account_id=None, unread=None)
        if narrowing != MessageFilter() or filters.unread is False or message_ids is not None:
            if filters.unread is False:
                narrowing = replace(narrowing, unread=False)
            matching = ["m.tenant_id = $1", *message_conditions(narrowing, statement)]
            if message_ids is not None:
                # One array parameter: up to 2,000 ids, and one statement text for any count.
                matching.append(f"m.id = ANY({statement.value(list(message_ids), 'uuid[]')})")
            if filters.account_id is not None:
                matching.append(f"m.account_id = {statement.value(filters.account_id, 'uuid')}")
            where.append(
                f"t.id IN (SELECT m.thread_id FROM messages m WHERE {' AND '.join(matching)})"
            )
        if after is not None:
            moment = statement.value(after[0], "timestamptz")
            last_id = statement.value(after[1], "uuid")
            where.append(f"(t.last_message_at, t.id) < ({moment}, {last_id})")
        sql = (
            f"SELECT {_THREAD_ITEM}, t.last_message_at, t.id FROM threads t "
            f"WHERE {' AND '.join(where)} ORDER BY t.last_message_at DESC, t.id DESC "
            f"LIMIT {statement.value(limit, 'int')}"
        )
        return await self.fetch(sql, *statement.args)
