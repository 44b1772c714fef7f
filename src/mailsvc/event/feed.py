"""Reading a tenant's events from a position: the feed's pages and the SSE stream."""

from __future__ import annotations

import uuid
from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass

from pydantic import BaseModel, Field
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from mailsvc.errors import BadRequestError, GoneError
from mailsvc.event.listener import ChangeListener
from mailsvc.event.repository import START, ChangeRepository, FeedPosition, trimmed_before
from mailsvc.event.schemas import Event, decode_position, encode_position, event_from_change
from mailsvc.models import Change


class ChangePage(BaseModel):
    """Events after `since`, oldest first, and where to go on from."""

    events: list[Event]
    next_cursor: str = Field(
        description="Pass as `since` for the next page. When `events` is empty it is "
        "the cursor you sent: nothing newer has committed yet."
    )
    has_more: bool = Field(description="More events are there already: ask again at once.")


@dataclass(frozen=True, slots=True)
class Selection:
    """Which of the tenant's events a reader wants."""

    account_id: uuid.UUID | None = None
    types: tuple[str, ...] = ()


def parse_cursor(value: str, *, field: str) -> FeedPosition:
    try:
        return decode_position(value)
    except ValueError as exc:
        raise BadRequestError(f"{field} is not a feed cursor", code="invalid_cursor") from exc


async def check_retained(session: AsyncSession, position: FeedPosition) -> FeedPosition:
    """410 when retention may have removed changes after `position`; else the trim mark."""
    trimmed = await trimmed_before(session)
    if position != START and position < trimmed:
        raise GoneError(
            "changes after this cursor were removed by retention: resync, then read "
            "the feed from a new cursor",
            code="cursor_expired",
        )
    return trimmed


async def check_issued(
    session: AsyncSession,
    tenant_id: str,
    position: FeedPosition,
    *,
    trimmed: FeedPosition,
    field: str,
) -> None:
    """400 when `position` lies past every position the feed could have issued.

    Reading on from such a cursor would answer nothing until the tenant's events
    caught up with it, then silently skip every event in between. Each issued cursor
    is the start, a committed change of the tenant (still in the log, so at most its
    head) or one retention removed since (at most the trim mark).
    """
    if position == START or position <= trimmed:
        return
    if position > await ChangeRepository(session, tenant_id).head():
        raise BadRequestError(
            f"{field} is past the newest event: this service never issued that cursor",
            code="cursor_not_issued",
        )


def _events(changes: Sequence[Change]) -> list[Event]:
    return [event_from_change(change) for change in changes]


async def read_page(
    session: AsyncSession, tenant_id: str, since: FeedPosition, selection: Selection, limit: int
) -> ChangePage:
    """One page of the feed after `since` (4xx for a cursor that cannot be served)."""
    trimmed = await check_retained(session, since)
    changes = await ChangeRepository(session, tenant_id).after(
        since, limit=limit, account_id=selection.account_id, types=selection.types
    )
    if not changes:
        # Only an empty page can come from a cursor in the future: a later event exists.
        await check_issued(session, tenant_id, since, trimmed=trimmed, field="since")
    last = FeedPosition(changes[-1].txid, changes[-1].id) if changes else since
    return ChangePage(
        events=_events(changes), next_cursor=encode_position(last), has_more=len(changes) == limit
    )


async def recent_events(
    session: AsyncSession, tenant_id: str, account_id: uuid.UUID, *, limit: int
) -> tuple[list[Event], FeedPosition]:
    """The account's last `limit` events, newest first, and the tenant's feed position
    to follow on from without a gap or a repeat (the newest event's, or now)."""
    repository = ChangeRepository(session, tenant_id)
    changes = await repository.latest(account_id, limit=limit)
    if changes:
        return _events(changes), FeedPosition(changes[0].txid, changes[0].id)
    return [], await repository.head()


class EventReader:
    """Follows one tenant's feed for a long-lived subscriber (SSE).

    Each read opens a short session: a stream never holds a database connection
    while it waits for news.
    """

    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        listener: ChangeListener,
        tenant_id: str,
        selection: Selection,
        *,
        batch: int = 200,
    ) -> None:
        self._sessionmaker = sessionmaker
        self._listener = listener
        self._tenant_id = tenant_id
        self._selection = selection
        self._batch = batch

    async def start(
        self, resume_from: FeedPosition | None, *, field: str = "since"
    ) -> FeedPosition:
        """The position to stream from: after `resume_from` (read from `field`, named
        when it cannot be served), or from now on."""
        async with self._sessionmaker() as session:
            if resume_from is None:
                return await ChangeRepository(session, self._tenant_id).head()
            trimmed = await check_retained(session, resume_from)
            await check_issued(session, self._tenant_id, resume_from, trimmed=trimmed, field=field)
            return resume_from

    async def follow(
        self, position: FeedPosition, *, keepalive_seconds: float
    ) -> AsyncGenerator[Event | None, None]:
        """Events after `position` as they commit; None after `keepalive_seconds` idle."""
        async with self._listener.subscribe(self._tenant_id) as wakeup:
            while True:
                async with self._sessionmaker() as session:
                    changes = await ChangeRepository(session, self._tenant_id).after(
                        position,
                        limit=self._batch,
                        account_id=self._selection.account_id,
                        types=self._selection.types,
                    )
                for change in changes:
                    yield event_from_change(change)
                    position = FeedPosition(change.txid, change.id)
                if len(changes) == self._batch:
                    continue
                if not await wakeup.wait(keepalive_seconds) and not wakeup.missed:
                    yield None
                wakeup.missed = False
