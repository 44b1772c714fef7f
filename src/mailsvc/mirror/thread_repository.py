"""SQL that keeps threads in step with stored messages: links by Message-ID, merges,
and the per-thread summary (counts, last activity, participants)."""

from __future__ import annotations

import uuid
from collections.abc import Collection, Sequence
from typing import Any

from sqlalchemy import (
    Text,
    any_,
    bindparam,
    func,
    literal,
    literal_column,
    not_,
    select,
    true,
)
from sqlalchemy.dialects.postgresql import ARRAY, array
from sqlalchemy.sql.expression import ColumnElement

from mailsvc.kit.db import utcnow
from mailsvc.kit.repository import TenantRepository
from mailsvc.models import Message, Thread

_EMPTY_JSON_ARRAY: ColumnElement[Any] = literal_column("'[]'::jsonb")


class ThreadingRepository(TenantRepository):
    """The write side of threads, used whenever messages are stored, moved or deleted."""

    async def threads_by_message_ids(
        self, account_id: uuid.UUID, message_ids: Collection[str]
    ) -> list[tuple[str, uuid.UUID]]:
        """(Message-ID, thread) of stored messages carrying any of `message_ids`."""
        if not message_ids:
            return []
        result = await self.session.execute(
            self.scoped.select(Message.message_id_header, Message.thread_id).where(
                Message.account_id == account_id,
                Message.message_id_header.in_(list(message_ids)),
                Message.thread_id.is_not(None),
            )
        )
        return [(str(mid), tid) for mid, tid in result.all() if tid is not None]

    async def threads_referencing(
        self, account_id: uuid.UUID, message_ids: Collection[str]
    ) -> list[tuple[list[str], str | None, uuid.UUID]]:
        """Stored messages that reply to any of `message_ids` (their parent arrived late).

        Two index lookups instead of one `references && ... OR in_reply_to IN ...`: the
        planner answers that OR (and a many-element `&&`) with a sequential scan, which
        made every batch of a sync slower than the one before. One `@>` probe per
        Message-ID uses the GIN index.
        """
        if not message_ids:
            return []
        wanted = list(message_ids)
        scope = (Message.account_id == account_id, Message.thread_id.is_not(None))
        probe = (
            func.unnest(bindparam("wanted", wanted, type_=ARRAY(Text)))
            .table_valued("ref")
            .render_derived(name="probe")
        )
        referencing = (
            self.scoped.select(
                Message.id, Message.references, Message.in_reply_to, Message.thread_id
            )
            .where(*scope, Message.references.contains(array([probe.c.ref], type_=Text)))
            .lateral("referencing")
        )
        by_references = await self.session.execute(
            select(
                referencing.c.id,
                referencing.c.references,
                referencing.c.in_reply_to,
                referencing.c.thread_id,
            )
            .select_from(probe)
            .join(referencing, true())
        )
        by_reply = await self.session.execute(
            self.scoped.select(
                Message.id, Message.references, Message.in_reply_to, Message.thread_id
            ).where(*scope, Message.in_reply_to.in_(wanted))
        )
        found = {row[0]: row for row in [*by_references.all(), *by_reply.all()]}
        return [(list(refs or []), irt, tid) for _, refs, irt, tid in found.values() if tid]

    async def thread_for_gmail_id(self, account_id: uuid.UUID, gm_thread_id: int) -> uuid.UUID:
        """The thread of a Gmail X-GM-THRID, created on first sight."""
        statement = (
            self.scoped.insert(
                Thread,
                {
                    "account_id": account_id,
                    "gm_thread_id": gm_thread_id,
                    "last_message_at": func.now(),
                },
            )
            .on_conflict_do_update(
                index_elements=["tenant_id", "account_id", "gm_thread_id"],
                set_={"gm_thread_id": gm_thread_id},
            )
            .returning(Thread.id)
        )
        thread_id: uuid.UUID = (await self.session.execute(statement)).scalar_one()
        return thread_id

    async def create_many(
        self, account_id: uuid.UUID, threads: Sequence[tuple[uuid.UUID, str | None]]
    ) -> None:
        """New, empty threads (id, subject); `refresh_summaries` fills them in."""
        await self.scoped.insert_many(
            Thread,
            [
                {
                    "id": thread_id,
                    "account_id": account_id,
                    "subject": subject,
                    "last_message_at": utcnow(),
                }
                for thread_id, subject in threads
            ],
        )

    async def merge(self, target: uuid.UUID, sources: Collection[uuid.UUID]) -> None:
        """Move every message of `sources` into `target` and drop the emptied threads."""
        if not sources:
            return
        await self.session.execute(
            self.scoped.update(Message)
            .where(Message.thread_id.in_(list(sources)))
            .values(thread_id=target)
        )
        await self.session.execute(self.scoped.delete(Thread).where(Thread.id.in_(list(sources))))

    async def refresh_summaries(self, thread_ids: Sequence[uuid.UUID]) -> None:
        """Recompute counts, last activity and participants; drop threads left empty."""
        ids = list(set(thread_ids))
        if not ids:
            return
        member = Message.__table__.alias("member")
        unseen = not_(literal("\\Seen", Text) == any_(member.c.flags))
        stats = (
            self.scoped.select(
                member.c.thread_id,
                func.count().label("message_count"),
                func.count().filter(unseen).label("unread_count"),
                func.max(member.c.internal_date).label("last_message_at"),
            )
            .where(member.c.thread_id.in_(ids))
            .group_by(member.c.thread_id)
            .subquery()
        )
        sender = func.jsonb_array_elements(member.c.from_).table_valued("value").alias("sender")
        participants = (
            self.scoped.select(
                func.coalesce(
                    func.jsonb_agg(sender.c.value.distinct()), literal_column("'[]'::jsonb")
                ),
                from_=member,
            )
            .join(sender, true())
            .where(member.c.thread_id == Thread.id)
            .scalar_subquery()
        )
        await self.session.execute(
            self.scoped.update(Thread)
            .where(Thread.id == stats.c.thread_id)
            .values(
                message_count=stats.c.message_count,
                unread_count=stats.c.unread_count,
                last_message_at=stats.c.last_message_at,
                participants=participants,
            )
        )
        still_used = self.scoped.select(Message.thread_id).where(Message.thread_id.in_(ids))
        await self.session.execute(
            self.scoped.delete(Thread).where(Thread.id.in_(ids), Thread.id.not_in(still_used))
        )
