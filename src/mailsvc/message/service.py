"""Reading messages: filters and Gmail-style queries to SQL conditions, rows to API bodies."""

from __future__ import annotations

import asyncio
import math
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, time
from typing import Any

from mailsvc.errors import FieldError, NotFoundError, SearchUnavailableError, UnprocessableError
from mailsvc.kit.pagination import read_cursor
from mailsvc.kit.reads import ReadPool
from mailsvc.message.bodies import message_out
from mailsvc.message.read_repository import (
    JsonPage,
    MailboxChoice,
    MessageReads,
    SearchSummary,
    body_of,
    with_highlight,
)
from mailsvc.models.mailbox import MAILBOX_ROLES
from mailsvc.ops.metrics import timed_search
from mailsvc.search.backend import Hit, HitPage, SearchBackend, SearchRebuilding
from mailsvc.search.excerpt import excerpt
from mailsvc.search.filter import LabelFolder, MessageFilter, Order, Position
from mailsvc.search.query import QuerySyntaxError, SearchQuery, parse_query
from mailsvc.search.words import parse_free_text

# What a list without `q` asks for: nothing beyond its filters.
_NO_QUERY = SearchQuery(text="")


@dataclass(frozen=True, slots=True, kw_only=True)
class ListRequest:
    """A list or search request as the endpoint received it."""

    account_id: uuid.UUID | None = None
    mailbox: str | None = None
    thread_id: uuid.UUID | None = None
    unread: bool | None = None
    flagged: bool | None = None
    has_attachments: bool | None = None
    from_: str | None = None
    to: str | None = None
    after: datetime | None = None
    before: datetime | None = None
    q: str | None = None
    labels: tuple[str, ...] = ()
    order: Order = "newest"
    limit: int = 50
    cursor: str | None = None
    q_field: str = "q"


def _highlighted(summaries: Sequence[SearchSummary], words: frozenset[str]) -> list[str]:
    """Each summary's JSON with the excerpt of its body around `words` (CPU work: run
    off the event loop)."""
    return [
        with_highlight(summary.json, excerpt(summary.body, words) if summary.body else None)
        for summary in summaries
    ]


def _cursor_key(key: Any) -> datetime | float:
    """A cursor's sort key: an aware received time, or a finite relevance score
    (ValueError otherwise: a cursor we did not hand out)."""
    if isinstance(key, str):
        moment = datetime.fromisoformat(key)
        if moment.utcoffset() is None:
            raise ValueError("cursor time without an offset")
        return moment
    if not isinstance(key, int | float) or isinstance(key, bool):
        raise ValueError("cursor key is not a number")
    try:
        score = float(key)
    except OverflowError as exc:
        raise ValueError("cursor score out of range") from exc
    if not math.isfinite(score):
        raise ValueError("cursor score is not finite")
    return score


def _mailbox_choice(value: str) -> uuid.UUID | str:
    """The `mailbox` parameter as a mailbox id or a role (422 for anything else)."""
    try:
        return uuid.UUID(value)
    except ValueError:
        pass
    role = value.lower()
    if role in MAILBOX_ROLES:
        return role
    raise UnprocessableError(
        "mailbox must be a mailbox id or a role",
        code="invalid_mailbox",
        errors=[
            FieldError(
                field="query.mailbox",
                message=f"a mailbox id or one of {', '.join(MAILBOX_ROLES)}",
            )
        ],
    )


def _day_start(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=UTC)


def _later(a: datetime | None, b: datetime | None) -> datetime | None:
    return max(a, b) if a and b else a or b


def _earlier(a: datetime | None, b: datetime | None) -> datetime | None:
    return min(a, b) if a and b else a or b


def _both(a: bool | None, b: bool | None, field: str) -> bool | None:
    if a is not None and b is not None and a != b:
        raise UnprocessableError(
            "the query and the filters contradict each other",
            code="contradictory_filters",
            errors=[FieldError(field=f"query.{field}", message="contradicts `q`")],
        )
    return a if a is not None else b


class MessageService:
    """Reads of one tenant's messages on the raw pool (kit/reads.py). Never writes.

    Lists come from PostgreSQL alone; a request with a full-text part
    (`MessageFilter.searches`) asks the search backend for its hits and joins them
    back to PostgreSQL (`_search_page`).
    """

    def __init__(
        self, reads: ReadPool, tenant_id: str, *, search: SearchBackend | None = None
    ) -> None:
        self._tenant_id = tenant_id
        self._messages = MessageReads(reads, tenant_id)
        self._search = search

    async def filters(self, request: ListRequest) -> MessageFilter:
        """The request's filters and query as one `MessageFilter` (4xx when invalid)."""
        return await self._filters(request, self._parse(request))

    async def page_json(self, request: ListRequest) -> bytes:
        """One `MessagePage` as its JSON body; PostgreSQL builds the items."""
        if request.q:
            with timed_search():
                return await self._page_json(request)
        return await self._page_json(request)

    async def _page_json(self, request: ListRequest) -> bytes:
        searches = request.q or request.from_ or request.to
        if not searches and request.mailbox is not None and request.cursor is None:
            return await self._mailbox_page(request, _mailbox_choice(request.mailbox))
        filters = await self.filters(request)
        order = request.order
        if order == "relevance" and not filters.text:
            order = "newest"  # nothing to rank by
        after = self._position(request.cursor, order)
        if filters.searches:
            page = await self._search_page(filters, order=order, after=after, limit=request.limit)
        else:
            page = await self._messages.page(filters, limit=request.limit, after=after, order=order)
        return body_of(page, order=order)

    async def _mailbox_page(self, request: ListRequest, mailbox: uuid.UUID | str) -> bytes:
        """The first page of a plain list of one mailbox (an id or a role) in one
        statement: the mailbox is resolved inside it instead of by a lookup first.

        An unknown mailbox id still answers 404, found out only when the page is
        empty; a role no mailbox has lists nothing, as before.
        """
        filters = await self._filters(replace(request, mailbox=None), _NO_QUERY)
        order: Order = "oldest" if request.order == "oldest" else "newest"
        if isinstance(mailbox, str):
            page = await self._messages.page(
                filters, limit=request.limit, after=None, order=order, mailbox_role=mailbox
            )
        else:
            filters = replace(filters, mailbox_ids=(mailbox,))
            page = await self._messages.page(filters, limit=request.limit, after=None, order=order)
            if page.empty:
                # Unknown, empty, or a Gmail label folder, which holds no rows itself.
                choice = await self._messages.mailbox(mailbox)
                if choice is None:
                    raise NotFoundError("mailbox not found", code="mailbox_not_found")
                if choice.label_folders:
                    filters = replace(filters, mailbox_ids=(), label_folders=choice.label_folders)
                    page = await self._messages.page(
                        filters, limit=request.limit, after=None, order=order
                    )
        return body_of(page, order=order)

    async def search_hits(
        self,
        filters: MessageFilter,
        *,
        order: Order,
        after: Position | None,
        limit: int,
        bodies: bool = False,
    ) -> tuple[list[tuple[Hit, SearchSummary]], bool]:
        """Up to `limit` hits of the backend that PostgreSQL confirms, with their
        summaries (and the start of their bodies when `bodies`), and whether more may
        follow.

        A hit PostgreSQL does not confirm (deleted, moved, re-flagged since it was
        indexed, or not this tenant's) is dropped, and the backend is asked for the
        hits after it until the page is full, so a stale index shortens nothing.
        """
        confirmed: list[tuple[Hit, SearchSummary]] = []
        position = after
        while True:
            page = await self._hits(filters, order=order, after=position, limit=limit + 1)
            summaries = await self._messages.summaries(page.hits, filters, bodies=bodies)
            confirmed += [
                (hit, summaries[hit.message_id]) for hit in page.hits if hit.message_id in summaries
            ]
            if len(confirmed) > limit or not page.more or not page.hits:
                return confirmed[:limit], len(confirmed) > limit or page.more
            last = page.hits[-1]
            position = Position(key=last.key, id=last.message_id)

    async def matching_ids(self, filters: MessageFilter, *, limit: int) -> list[uuid.UUID]:
        """The ids of the newest `limit` messages the backend finds, unconfirmed: for
        a caller whose own query checks them against PostgreSQL (threads)."""
        page = await self._hits(filters, order="newest", after=None, limit=limit)
        return [hit.message_id for hit in page.hits]

    async def _hits(
        self, filters: MessageFilter, *, order: Order, after: Position | None, limit: int
    ) -> HitPage:
        """One page of the backend; 503 while the tenant's index is rebuilt (an empty
        page for a tenant with nothing stored, which has nothing to wait for)."""
        if self._search is None:
            raise RuntimeError("MessageService was built without a search backend")
        try:
            return await self._search.search(
                self._tenant_id, filters, order=order, after=after, limit=limit
            )
        except SearchRebuilding as exc:
            if not await self._messages.has_any():
                return HitPage(hits=[], more=False)
            raise SearchUnavailableError(exc.reason) from exc

    async def _search_page(
        self, filters: MessageFilter, *, order: Order, after: Position | None, limit: int
    ) -> JsonPage:
        # The words whose occurrences a highlight marks: those the free text asks for.
        words = parse_free_text(filters.text).positive_words if filters.text else frozenset()
        hits, more = await self.search_hits(
            filters, order=order, after=after, limit=limit, bodies=bool(words)
        )
        summaries = [summary for _, summary in hits]
        items = (
            await asyncio.to_thread(_highlighted, summaries, words)
            if words and hits
            else [with_highlight(summary.json, None) for summary in summaries]
        )
        last = hits[-1][0] if more and hits else None
        return JsonPage(
            items="[" + ",".join(items) + "]",
            last=None if last is None else Position(key=last.key, id=last.message_id),
        )

    async def get(self, message_id: uuid.UUID, *, allow_remote: bool) -> bytes:
        """One `MessageOut` as its JSON body."""
        row = await self._messages.message(message_id)
        if row is None:
            raise NotFoundError("message not found", code="message_not_found")
        message = await message_out(row, allow_remote=allow_remote)
        return message.model_dump_json(by_alias=True).encode()

    @staticmethod
    def _parse(request: ListRequest) -> SearchQuery:
        if not request.q:
            return _NO_QUERY
        try:
            return parse_query(request.q)
        except QuerySyntaxError as exc:
            raise UnprocessableError(
                str(exc),
                code="invalid_query",
                errors=[FieldError(field=f"query.{request.q_field}", message=str(exc))],
            ) from exc

    @staticmethod
    def _position(cursor: str | None, order: str) -> Position | None:
        def position(raw: dict[str, Any]) -> Position:
            if raw.get("o") != order:
                raise ValueError("cursor is for another order")
            key = raw["k"]
            if isinstance(key, str) == (order == "relevance"):
                raise ValueError("cursor key does not fit the order")
            return Position(key=_cursor_key(key), id=uuid.UUID(str(raw["i"])))

        return read_cursor(cursor, position)

    async def _mailboxes(self, request: ListRequest, query: SearchQuery) -> MailboxChoice | None:
        """Mailboxes the request and its query allow (None: every mailbox).

        Several choices (`mailbox=` and `in:` or `label:`) allow the mailboxes they
        all name; a Gmail label folder counts as the place of its label.
        """
        account = request.account_id
        chosen: list[MailboxChoice] = []
        if request.mailbox is not None:
            chosen.append(await self._mailbox_param(request.mailbox, account))
        if query.mailbox_role is not None:
            role = query.mailbox_role
            chosen.append(await self._messages.mailboxes(account_id=account, role=role, name=None))
        if query.mailbox is not None:
            name = query.mailbox
            chosen.append(await self._messages.mailboxes(account_id=account, role=None, name=name))
        if not chosen:
            return None
        allowed = chosen[0].places()
        for more in chosen[1:]:
            allowed &= more.places()
        return MailboxChoice(
            ids=tuple(sorted(place for place in allowed if isinstance(place, uuid.UUID))),
            label_folders=tuple(
                sorted(place for place in allowed if isinstance(place, LabelFolder))
            ),
        )

    async def _mailbox_param(self, value: str, account_id: uuid.UUID | None) -> MailboxChoice:
        mailbox = _mailbox_choice(value)
        if isinstance(mailbox, str):
            return await self._messages.mailboxes(account_id=account_id, role=mailbox, name=None)
        choice = await self._messages.mailbox(mailbox)
        if choice is None:
            raise NotFoundError("mailbox not found", code="mailbox_not_found")
        return choice

    async def _filters(self, request: ListRequest, query: SearchQuery) -> MessageFilter:
        after = _later(request.after, _day_start(query.after) if query.after else None)
        before = _earlier(request.before, _day_start(query.before) if query.before else None)
        mailboxes = await self._mailboxes(request, query)
        filters = MessageFilter(
            account_id=request.account_id,
            mailbox_ids=None if mailboxes is None else mailboxes.ids,
            label_folders=() if mailboxes is None else mailboxes.label_folders,
            labels=tuple(sorted(set(request.labels))),
            thread_id=request.thread_id,
            unread=_both(request.unread, query.unread, "unread"),
            flagged=_both(request.flagged, query.flagged, "flagged"),
            has_attachments=_both(request.has_attachments, query.has_attachment, "has_attachments"),
            from_=tuple(query.from_),
            to=tuple(query.to),
            subject=tuple(query.subject),
            not_from=tuple(query.excluded_from),
            not_to=tuple(query.excluded_to),
            not_subject=tuple(query.excluded_subject),
            received_after=after,
            received_before=before,
            text=query.text,
        )
        if request.from_:
            filters = replace(filters, from_=(*filters.from_, request.from_))
        if request.to:
            filters = replace(filters, to=(*filters.to, request.to))
        return filters
