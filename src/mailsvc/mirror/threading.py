"""Thread assignment for newly stored messages (JWZ-style, on Message-ID links).

Messages are linked when one's Message-ID appears in another's In-Reply-To or
References, or when two copies share a Message-ID (INBOX and Sent). A message
whose parent arrives later is merged into the parent's thread at that point;
two threads that a new message connects become one (the older id survives).
Gmail's X-GM-THRID, when offered, is used as is. Subject-only grouping (the last
JWZ step) is not done: it merges unrelated "Hello" mails more often than it helps.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from mailsvc.kit.ids import uuid7
from mailsvc.mirror.thread_repository import ThreadingRepository


@dataclass(frozen=True, slots=True)
class ThreadingInput:
    """What threading needs of one newly stored message."""

    id: uuid.UUID
    message_id: str | None
    in_reply_to: str | None
    references: tuple[str, ...]
    gm_thread_id: int | None
    subject: str | None


class _UnionFind:
    def __init__(self) -> None:
        self.parent: dict[object, object] = {}

    def find(self, item: object) -> object:
        self.parent.setdefault(item, item)
        root = item
        while self.parent[root] != root:
            root = self.parent[root]
        while self.parent[item] != root:
            self.parent[item], item = root, self.parent[item]
        return root

    def union(self, a: object, b: object) -> None:
        self.parent[self.find(a)] = self.find(b)


async def thread_new_messages(
    session: AsyncSession,
    tenant_id: str,
    account_id: uuid.UUID,
    messages: Sequence[ThreadingInput],
) -> dict[uuid.UUID, uuid.UUID]:
    """The thread of each message about to be stored, by message id.

    Called before the messages are inserted (they carry their thread id in the same
    INSERT): threads they need are created here, and threads they connect are merged.
    """
    repository = ThreadingRepository(session, tenant_id)
    assignment: dict[uuid.UUID, uuid.UUID] = {}
    plain = []
    for message in messages:
        if message.gm_thread_id is not None:
            thread = await repository.thread_for_gmail_id(account_id, message.gm_thread_id)
            assignment[message.id] = thread
        else:
            plain.append(message)
    if not plain:
        return assignment

    own = {m.message_id for m in plain if m.message_id}
    linked = {ref for m in plain for ref in (*m.references, m.in_reply_to) if ref}
    known = await repository.threads_by_message_ids(account_id, own | linked)
    children = await repository.threads_referencing(account_id, own)

    groups = _UnionFind()
    for message in plain:
        node = ("msg", message.id)
        groups.find(node)
        for key in (message.message_id, message.in_reply_to, *message.references):
            if key:
                groups.union(node, ("mid", key))
    for message_id, thread in known:
        groups.union(("mid", message_id), ("thread", thread))
    for references, in_reply_to, thread in children:
        for key in (*references, in_reply_to):
            if key and key in own:
                groups.union(("mid", key), ("thread", thread))

    members: dict[object, list[ThreadingInput]] = {}
    existing: dict[object, set[uuid.UUID]] = {}
    for message in plain:
        members.setdefault(groups.find(("msg", message.id)), []).append(message)
    for candidate in list(groups.parent):
        if isinstance(candidate, tuple) and candidate[0] == "thread":
            thread_id = candidate[1]
            assert isinstance(thread_id, uuid.UUID)
            existing.setdefault(groups.find(candidate), set()).add(thread_id)

    created: list[tuple[uuid.UUID, str | None]] = []
    for root, group in members.items():
        threads = existing.get(root, set())
        if threads:
            # uuid7 ids sort by creation: the oldest thread absorbs the others.
            target = min(threads)
            await repository.merge(target, threads - {target})
        else:
            target = uuid7()
            created.append((target, group[0].subject))
        for message in group:
            assignment[message.id] = target
    await repository.create_many(account_id, created)
    return assignment
