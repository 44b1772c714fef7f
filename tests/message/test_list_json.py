"""The list page PostgreSQL builds as JSON is what the `MessageSummary` model would say."""

from __future__ import annotations

import asyncio
import uuid
from email.message import EmailMessage

import httpx
from fastapi import FastAPI
from sqlalchemy import select

from mailsvc.message.lookup import MessageLookup
from mailsvc.message.schemas import MessagePage, MessageSummary
from mailsvc.message.service import ListRequest, MessageService
from mailsvc.models import Message
from mailsvc.runtime import Runtime
from mailsvc.sync.engine import SyncEngine
from tests.fixtures import imap_client
from tests.fixtures.dovecot import DovecotServer
from tests.fixtures.mail import SyncTarget
from tests.fixtures.search import make_searchable


def _message(subject: str | None, sender: str | None, body: str, cc: str | None = None) -> bytes:
    message = EmailMessage()
    if sender is not None:
        message["From"] = sender
    message["To"] = "Team <team@acme.test>, bob@globex.test"
    if cc is not None:
        message["Cc"] = cc
    if subject is not None:
        message["Subject"] = subject
    message["Message-ID"] = f"<{uuid.uuid4().hex}@example.test>"
    message.set_content(body)
    return message.as_bytes()


MESSAGES = [
    _message(
        "Report <b> & co",
        "Alice Smith <alice@acme.test>",
        "Alice & Bob wrote the report, where x < y and y > z holds for all.",
    ),
    _message(None, None, "No subject, no sender; report inside."),
    _message("Отчёт", '"Иван Петров" <ivan@example.ru>', "Квартальный report", "Ann <a@x.test>"),
    _message("Dated", "dave@example.test", "Another report without a name."),
]


async def _pages_both_ways(
    app: FastAPI, tenant_id: str, request: ListRequest
) -> tuple[MessagePage, list[MessageSummary]]:
    """The page as the endpoint builds it (raw pool, JSON from PostgreSQL), and the
    same messages as models built from SQLAlchemy rows of the write path, in the
    list's order (a search's page keeps its own order, with its highlights)."""
    state: Runtime = app.state.mailsvc
    service = MessageService(state.reads, tenant_id, search=state.search)
    built = MessagePage.model_validate_json(await service.page_json(request))
    async with state.sessionmaker() as session:
        lookup = MessageLookup(session, tenant_id)
        stored = await session.scalars(select(Message.id).where(Message.tenant_id == tenant_id))
        by_id = {message_id: await lookup.summary(message_id) for message_id in stored}
    if (await service.filters(request)).searches:
        return built, [
            by_id[item.id].model_copy(update={"highlight": item.highlight}) for item in built.items
        ]
    ordered = sorted(by_id.values(), key=lambda summary: (summary.received_at, summary.id))
    return built, ordered if request.order == "oldest" else ordered[::-1]


async def test_json_page_equals_the_model_built_from_rows(
    app: FastAPI, engine: SyncEngine, target: SyncTarget, dovecot: DovecotServer
) -> None:
    await asyncio.to_thread(imap_client.append, dovecot, target.user, "INBOX", MESSAGES)
    await asyncio.to_thread(
        imap_client.run, dovecot, target.user, "INBOX", ("STORE", "1", "+FLAGS", "(\\Seen)")
    )
    await asyncio.to_thread(
        imap_client.run, dovecot, target.user, "INBOX", ("STORE", "3", "+FLAGS", "(\\Flagged)")
    )
    await engine.sync_account(target.tenant_id, target.account_id)
    await make_searchable(app, target.tenant_id)

    for request in (
        ListRequest(limit=50),
        ListRequest(limit=50, order="oldest"),
        ListRequest(limit=50, q="report", order="relevance"),
        ListRequest(limit=50, q="report"),
    ):
        built, expected = await _pages_both_ways(app, target.tenant_id, request)
        assert built.items == expected, request
        assert built.next_cursor is None
        assert len(expected) == len(MESSAGES)

    built, _ = await _pages_both_ways(app, target.tenant_id, ListRequest(q="report"))
    marked = {item.subject: item.highlight for item in built.items}
    # Escaped text around the marks: the markup of the body never reaches the client.
    excerpt = marked["Report <b> & co"]
    assert excerpt is not None
    assert excerpt.startswith("Alice &amp; Bob wrote the <mark>report</mark>, where x &lt; y")
    assert "<" not in excerpt.replace("<mark>", "").replace("</mark>", "")


async def test_pages_of_json_cover_the_list_once_with_the_rate_limit_headers(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    engine: SyncEngine,
    target: SyncTarget,
    dovecot: DovecotServer,
) -> None:
    await asyncio.to_thread(imap_client.append, dovecot, target.user, "INBOX", MESSAGES)
    await engine.sync_account(target.tenant_id, target.account_id)

    seen: list[str] = []
    cursor: str | None = None
    while True:
        params = {"limit": "3", **({"cursor": cursor} if cursor else {})}
        response = await client.get("/api/messages", params=params, headers=auth)
        assert response.status_code == 200, response.text
        assert response.headers["content-type"] == "application/json"
        assert int(response.headers["RateLimit-Remaining"]) >= 0
        page = MessagePage.model_validate_json(response.content)
        seen += [str(item.id) for item in page.items]
        cursor = page.next_cursor
        if cursor is None:
            break
    assert len(seen) == len(set(seen)) == len(MESSAGES)
