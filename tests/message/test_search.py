"""Search through the API: words, phrases, exclusions, Gmail operators, other scripts."""

from __future__ import annotations

import asyncio
import uuid
from email.message import EmailMessage

import httpx
import pytest
from fastapi import FastAPI

from mailsvc.sync.engine import SyncEngine
from tests.fixtures import imap_client
from tests.fixtures.dovecot import DovecotServer
from tests.fixtures.mail import SyncTarget
from tests.fixtures.search import make_searchable

Headers = dict[str, str]

# (subject, from, to, body, attachment?)
CORPUS = [
    ("Quarterly report", "Alice Smith <alice@acme.test>", "team@acme.test",
     "The quarterly report is attached. Revenue grew.", True),
    ("Draft of the quarterly plan", "Bob <bob@globex.test>", "alice@acme.test",
     "A draft: report numbers are not final.", False),
    ("Lunch", "Carol <carol@acme.test>", "bob@globex.test",
     "Pizza or sushi today?", False),
    ("Встреча в понедельник", "Иван Петров <ivan@example.ru>", "team@acme.test",
     "Обсудим Проект и бюджет.", False),
    ("Angebot für Müller", "Jürgen <juergen@beispiel.de>", "alice@acme.test",
     "Das Angebot gilt bis Freitag. Grüße", False),
    ("会议通知", "王伟 <wang@example.cn>", "team@acme.test",
     "明天下午的会议取消了，请通知大家。", False),  # noqa: RUF001
]  # fmt: skip


def _message(subject: str, sender: str, to: str, body: str, attach: bool) -> bytes:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = to
    message["Subject"] = subject
    message["Message-ID"] = f"<{uuid.uuid4().hex}@example.test>"
    message.set_content(body)
    if attach:
        message.add_attachment(b"%PDF-1.4", maintype="application", subtype="pdf", filename="q.pdf")
    return message.as_bytes()


@pytest.fixture
async def corpus(
    app: FastAPI, engine: SyncEngine, target: SyncTarget, dovecot: DovecotServer
) -> SyncTarget:
    messages = [_message(*row) for row in CORPUS]
    await asyncio.to_thread(imap_client.append, dovecot, target.user, "INBOX", messages)
    await asyncio.to_thread(
        imap_client.run, dovecot, target.user, "INBOX", ("STORE", "3", "+FLAGS", "(\\Seen)")
    )
    await engine.sync_account(target.tenant_id, target.account_id)
    await make_searchable(app, target.tenant_id)
    return target


async def _subjects(client: httpx.AsyncClient, auth: Headers, q: str) -> set[str]:
    response = await client.get("/api/messages", params={"q": q}, headers=auth)
    assert response.status_code == 200, response.text
    return {item["subject"] for item in response.json()["items"]}


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("report", {"Quarterly report", "Draft of the quarterly plan"}),
        ('"quarterly report"', {"Quarterly report"}),
        ("report -draft", {"Quarterly report"}),
        ("pizza OR revenue", {"Lunch", "Quarterly report"}),
        ("from:alice", {"Quarterly report"}),
        ("from:acme.test", {"Quarterly report", "Lunch"}),
        ("to:alice@acme.test", {"Draft of the quarterly plan", "Angebot für Müller"}),
        ("subject:report", {"Quarterly report"}),
        ("-subject:report report", {"Draft of the quarterly plan"}),
        ("has:attachment", {"Quarterly report"}),
        ("is:read", {"Lunch"}),
        ("is:unread from:acme.test", {"Quarterly report"}),
        ("проект", {"Встреча в понедельник"}),
        ("ПОНЕДЕЛЬНИК", {"Встреча в понедельник"}),
        ("from:иван", {"Встреча в понедельник"}),
        ("müller", {"Angebot für Müller"}),
        ("grüße", {"Angebot für Müller"}),
        ("会议", {"会议通知"}),
        ("取消", {"会议通知"}),
        ("before:2000/01/01", set()),
        ("after:2000/01/01 lunch", {"Lunch"}),
        ("in:inbox pizza", {"Lunch"}),
        ("in:trash pizza", set()),
    ],
)
async def test_search_finds_the_expected_messages(
    client: httpx.AsyncClient, auth: Headers, corpus: SyncTarget, query: str, expected: set[str]
) -> None:
    assert await _subjects(client, auth, query) == expected


async def test_results_highlight_the_matches_and_rank_by_relevance(
    client: httpx.AsyncClient, auth: Headers, corpus: SyncTarget
) -> None:
    response = await client.get(
        "/api/sync/search", params={"query": "quarterly report"}, headers=auth
    )
    assert response.status_code == 200
    items = response.json()["items"]
    assert items[0]["subject"] == "Quarterly report"
    assert "<mark>report</mark>" in items[0]["highlight"]


async def test_search_combines_with_the_list_filters(
    client: httpx.AsyncClient, auth: Headers, corpus: SyncTarget
) -> None:
    response = await client.get(
        "/api/messages", params={"q": "report", "has_attachments": "false"}, headers=auth
    )
    assert {i["subject"] for i in response.json()["items"]} == {"Draft of the quarterly plan"}
    response = await client.get(
        "/api/messages", params={"q": "is:read", "unread": "true"}, headers=auth
    )
    assert response.status_code == 422


async def test_a_phrase_search_pages_through_every_match_once(
    app: FastAPI,
    client: httpx.AsyncClient,
    auth: Headers,
    engine: SyncEngine,
    target: SyncTarget,
    dovecot: DovecotServer,
) -> None:
    bodies = [
        "The budget review is on Monday.",
        "Notes from the budget review.",
        "Review the numbers, then the budget.",  # both words, not the phrase
        "Another budget review, with slides.",
        "Budget first; the review comes later.",  # both words, not the phrase
    ]
    messages = [
        _message(f"Memo {n}", "Ann <ann@acme.test>", "team@acme.test", body, False)
        for n, body in enumerate(bodies)
    ]
    await asyncio.to_thread(imap_client.append, dovecot, target.user, "INBOX", messages)
    await engine.sync_account(target.tenant_id, target.account_id)
    await make_searchable(app, target.tenant_id)
    # The list order (date, then id) of the three messages holding the phrase.
    listed = await client.get("/api/messages", params={"q": "budget", "limit": "10"}, headers=auth)
    phrase = {"Memo 0", "Memo 1", "Memo 3"}
    newest = [item["subject"] for item in listed.json()["items"] if item["subject"] in phrase]
    for order in ("newest", "oldest"):
        seen: list[str] = []
        cursor: str | None = None
        while True:
            params = {"q": '"budget review"', "limit": "1", "order": order}
            response = await client.get(
                "/api/messages", params={**params, **({"cursor": cursor} if cursor else {})},
                headers=auth,
            )  # fmt: skip
            assert response.status_code == 200, response.text
            page = response.json()
            seen += [item["subject"] for item in page["items"]]
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert seen == (newest if order == "newest" else newest[::-1]), order
