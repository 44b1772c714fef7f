"""Gmail labels through the messages API: shown, filtered, searched and changed.

The Gmail account is served by `tests.fixtures.imap_script` in Gmail mode (no Gmail
server is reachable here), beside a plain IMAP account of the same tenant, so that
every list shows what it does to accounts of both kinds.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select

from mailsvc.config import Settings
from mailsvc.models import Mailbox, Message
from mailsvc.sync.engine import SyncEngine
from tests.fixtures.app import TokenFactory
from tests.fixtures.imap_script import (
    GMAIL_CAPABILITIES,
    FakeMailbox,
    ScriptedImapServer,
    gmail_layout,
    register_account,
)
from tests.fixtures.search import app_with_backend, indexer_of, make_searchable
from tests.sync.messages import make_message

Headers = dict[str, str]
BUDGET_MSGID = 1278455344230334865
BUDGET_THRID = 1266894439832287888


def _received(hour: int) -> str:
    """An INTERNALDATE: lists sort on it, newest first."""
    return f"01-Jan-2026 {hour:02d}:00:00 +0000"


@dataclass
class Accounts:
    gmail: ScriptedImapServer
    all_mail: FakeMailbox
    gmail_id: uuid.UUID
    plain: ScriptedImapServer
    plain_id: uuid.UUID
    ids: dict[str, uuid.UUID]
    """Message id by subject."""
    mailboxes: dict[str, uuid.UUID]
    """Mailbox id by name (both accounts; names do not collide here)."""


@pytest.fixture
async def accounts(
    engine: SyncEngine, client: httpx.AsyncClient, auth: Headers, tenant_id: str
) -> AsyncIterator[Accounts]:
    all_mail = FakeMailbox(uidvalidity=3)
    all_mail.add(
        make_message(1, subject="Budget 2027")[1],
        labels=["\\Inbox", "\\Important", "Work", "Très important"],
        gm_msgid=BUDGET_MSGID,
        gm_thrid=BUDGET_THRID,
        internal_date=_received(1),
    )
    all_mail.add(
        make_message(2, subject="Lunch budget")[1], labels=["\\Inbox"], internal_date=_received(2)
    )
    all_mail.add(
        make_message(3, subject="Archived budget")[1], labels=[], internal_date=_received(3)
    )
    inbox = FakeMailbox(uidvalidity=41)
    inbox.add(make_message(4, subject="Plain budget")[1], internal_date=_received(4))
    layout = gmail_layout(all_mail, labels=["Work", "Très important"])
    async with AsyncExitStack() as stack:
        gmail = await stack.enter_async_context(
            ScriptedImapServer(capabilities=GMAIL_CAPABILITIES, mailboxes=layout)
        )
        plain = await stack.enter_async_context(
            ScriptedImapServer(
                capabilities="IMAP4rev1 CONDSTORE UIDPLUS", mailboxes={"INBOX": inbox}
            )
        )
        gmail_id = await register_account(client, auth, gmail)
        plain_id = await register_account(client, auth, plain, email="bob@example.test")
        for account_id in (gmail_id, plain_id):
            await engine.sync_account(tenant_id, account_id)
        async with engine.sessionmaker() as session:
            messages = await session.execute(
                select(Message.subject, Message.id).where(
                    Message.account_id.in_([gmail_id, plain_id])
                )
            )
            boxes = await session.execute(
                select(Mailbox.name, Mailbox.id).where(Mailbox.account_id == gmail_id)
            )
            ids = {str(subject): message_id for subject, message_id in messages.all()}
            mailboxes = {str(name): mailbox_id for name, mailbox_id in boxes.all()}
        yield Accounts(gmail, all_mail, gmail_id, plain, plain_id, ids, mailboxes)


async def _subjects(client: httpx.AsyncClient, auth: Headers, **params: Any) -> list[str]:
    response = await client.get("/api/messages", params=params, headers=auth)
    assert response.status_code == 200, response.text
    return [item["subject"] for item in response.json()["items"]]


async def test_labels_and_gmail_ids_in_the_message_json(
    client: httpx.AsyncClient, auth: Headers, accounts: Accounts
) -> None:
    budget = accounts.ids["Budget 2027"]
    response = await client.get(f"/api/messages/{budget}", headers=auth)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["labels"] == ["Très important", "Work", "\\Important", "\\Inbox"]
    # Strings, as every id of the API (a JavaScript number would lose digits).
    assert body["gmail_message_id"] == str(BUDGET_MSGID)
    assert body["gmail_thread_id"] == str(BUDGET_THRID)

    plain = await client.get(f"/api/messages/{accounts.ids['Plain budget']}", headers=auth)
    assert plain.json()["labels"] is None
    assert plain.json()["gmail_message_id"] is plain.json()["gmail_thread_id"] is None

    listed = await client.get(
        "/api/messages", params={"account_id": str(accounts.gmail_id)}, headers=auth
    )
    labels = {item["subject"]: item["labels"] for item in listed.json()["items"]}
    assert labels == {
        "Budget 2027": ["Très important", "Work", "\\Important", "\\Inbox"],
        "Lunch budget": ["\\Inbox"],
        "Archived budget": [],
    }


async def test_label_filter_is_exact_and_repeatable(
    client: httpx.AsyncClient, auth: Headers, accounts: Accounts
) -> None:
    assert await _subjects(client, auth, label="Work") == ["Budget 2027"]
    assert await _subjects(client, auth, label="\\Inbox") == ["Lunch budget", "Budget 2027"]
    both = [("label", "\\Inbox"), ("label", "Très important")]
    response = await client.get("/api/messages", params=both, headers=auth)
    assert [item["subject"] for item in response.json()["items"]] == ["Budget 2027"]
    assert await _subjects(client, auth, label="work") == []  # exact, as Gmail gives it
    assert await _subjects(client, auth, label="Work", unread=True) == ["Budget 2027"]
    # A label is a Gmail label: other servers' messages carry none.
    assert await _subjects(client, auth, label="INBOX") == []


async def test_inbox_lists_gmail_rows_labelled_inbox_beside_other_accounts(
    client: httpx.AsyncClient, auth: Headers, accounts: Accounts
) -> None:
    assert await _subjects(client, auth, mailbox="inbox") == [
        "Plain budget",
        "Lunch budget",
        "Budget 2027",
    ]
    gmail_only = await _subjects(client, auth, mailbox="inbox", account_id=str(accounts.gmail_id))
    assert gmail_only == ["Lunch budget", "Budget 2027"]
    # The next page of a role list takes the general path; it agrees.
    first = await client.get("/api/messages", params={"mailbox": "inbox", "limit": 2}, headers=auth)
    page = first.json()
    assert [item["subject"] for item in page["items"]] == ["Plain budget", "Lunch budget"]
    second = await client.get(
        "/api/messages",
        params={"mailbox": "inbox", "limit": 2, "cursor": page["next_cursor"]},
        headers=auth,
    )
    assert [item["subject"] for item in second.json()["items"]] == ["Budget 2027"]
    assert second.json()["next_cursor"] is None
    assert await _subjects(client, auth, mailbox="sent") == []
    assert await _subjects(client, auth, mailbox="all") == [
        "Archived budget",
        "Lunch budget",
        "Budget 2027",
    ]


async def test_a_label_folder_lists_the_rows_carrying_its_label(
    client: httpx.AsyncClient, auth: Headers, accounts: Accounts
) -> None:
    boxes = accounts.mailboxes
    assert await _subjects(client, auth, mailbox=str(boxes["Work"])) == ["Budget 2027"]
    assert await _subjects(client, auth, mailbox=str(boxes["INBOX"])) == [
        "Lunch budget",
        "Budget 2027",
    ]
    assert await _subjects(client, auth, mailbox=str(boxes["[Gmail]/Important"])) == ["Budget 2027"]
    assert await _subjects(client, auth, mailbox=str(boxes["[Gmail]/Sent Mail"])) == []
    assert await _subjects(client, auth, mailbox=str(boxes["[Gmail]/All Mail"])) == [
        "Archived budget",
        "Lunch budget",
        "Budget 2027",
    ]
    # With another filter (the general path) too.
    assert await _subjects(client, auth, mailbox=str(boxes["INBOX"]), flagged=False) == [
        "Lunch budget",
        "Budget 2027",
    ]
    missing = await client.get("/api/messages", params={"mailbox": str(uuid.uuid4())}, headers=auth)
    assert missing.status_code == 404
    assert missing.json()["code"] == "mailbox_not_found"


async def test_label_operator_without_free_text(
    client: httpx.AsyncClient, auth: Headers, accounts: Accounts
) -> None:
    assert await _subjects(client, auth, q="label:Work") == ["Budget 2027"]
    assert await _subjects(client, auth, q='label:"Très important"') == ["Budget 2027"]
    assert await _subjects(client, auth, q="label:work") == ["Budget 2027"]  # as mailboxes
    assert await _subjects(client, auth, q="in:inbox") == [
        "Plain budget",
        "Lunch budget",
        "Budget 2027",
    ]
    assert await _subjects(client, auth, q="label:Nothing") == []


@pytest.mark.parametrize("backend", ["tantivy", "postgres"])
async def test_label_search_on_each_backend(
    app: FastAPI,
    settings: Settings,
    auth: Headers,
    tenant_id: str,
    accounts: Accounts,
    backend: str,
) -> None:
    async with app_with_backend(app, settings, backend) as served:
        indexer = indexer_of(served)
        await indexer.rebuild(tenant_id)
        await indexer.drain(tenant_id)
        transport = httpx.ASGITransport(app=served)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            assert await _subjects(client, auth, q="budget label:Work") == ["Budget 2027"]
            assert await _subjects(client, auth, q='budget label:"Très important"') == [
                "Budget 2027"
            ]
            assert await _subjects(client, auth, q="budget in:inbox") == [
                "Plain budget",
                "Lunch budget",
                "Budget 2027",
            ]
            assert await _subjects(client, auth, q="budget", label="\\Inbox") == [
                "Lunch budget",
                "Budget 2027",
            ]
            response = await client.get(
                "/api/sync/search", params={"query": "lunch label:inbox"}, headers=auth
            )
            assert [item["subject"] for item in response.json()["items"]] == ["Lunch budget"]
            assert await _subjects(client, auth, q="budget label:Nothing") == []


async def test_changing_labels_reaches_the_server_and_the_row(
    app: FastAPI,
    client: httpx.AsyncClient,
    auth: Headers,
    tenant_id: str,
    accounts: Accounts,
) -> None:
    archived = accounts.ids["Archived budget"]
    await make_searchable(app, tenant_id)
    assert await _subjects(client, auth, q="budget label:Work") == ["Budget 2027"]
    accounts.gmail.commands.clear()
    response = await client.post(
        f"/api/messages/{archived}/labels",
        json={"add": ["Work", "Très important", "\\Starred"], "remove": ["\\Inbox"]},
        headers=auth,
    )
    assert response.status_code == 200, response.text
    assert response.json()["labels"] == ["Très important", "Work", "\\Starred"]
    stores = [c for c in accounts.gmail.commands if c.startswith("UID STORE")]
    assert stores == [
        'UID STORE 3 +X-GM-LABELS ("Work" "Tr&AOg-s important" \\Starred)',
        "UID STORE 3 -X-GM-LABELS (\\Inbox)",
    ]
    assert accounts.all_mail.messages[3].labels == ["Work", "Très important", "\\Starred"]
    # The row, its change, and search (the label change requeued its document).
    assert await _subjects(client, auth, label="Work") == ["Archived budget", "Budget 2027"]
    feed = await client.get(
        "/api/changes",
        params={"since": "0", "account_id": str(accounts.gmail_id), "types": "message.updated"},
        headers=auth,
    )
    assert feed.status_code == 200, feed.text
    updated = feed.json()["events"]
    assert [e["data"]["labels"] for e in updated] == [["Très important", "Work", "\\Starred"]]
    assert updated[0]["data"]["message_id"] == str(archived)
    # The label change queued the message's search document again (migration 0015).
    assert await make_searchable(app, tenant_id) == 1
    assert await _subjects(client, auth, q="budget label:Work") == [
        "Archived budget",
        "Budget 2027",
    ]

    removed = await client.post(
        f"/api/messages/{archived}/labels", json={"remove": ["Work"]}, headers=auth
    )
    assert removed.json()["labels"] == ["Très important", "\\Starred"]
    assert accounts.all_mail.messages[3].labels == ["Très important", "\\Starred"]


async def test_label_changes_refused_where_they_cannot_apply(
    client: httpx.AsyncClient, auth: Headers, make_token: TokenFactory, accounts: Accounts
) -> None:
    plain = accounts.ids["Plain budget"]
    accounts.plain.commands.clear()
    refused = await client.post(
        f"/api/messages/{plain}/labels", json={"add": ["Work"]}, headers=auth
    )
    assert refused.status_code == 409
    assert refused.headers["content-type"] == "application/problem+json"
    assert refused.json()["code"] == "labels_not_supported"
    assert accounts.plain.commands == []  # refused before any connection

    budget = accounts.ids["Budget 2027"]
    other = {"Authorization": f"Bearer {make_token('t-someone-else')}"}
    foreign = await client.post(
        f"/api/messages/{budget}/labels", json={"add": ["Work"]}, headers=other
    )
    assert foreign.status_code == 404
    assert foreign.json()["code"] == "message_not_found"

    empty = await client.post(f"/api/messages/{budget}/labels", json={}, headers=auth)
    assert (empty.status_code, empty.json()["code"]) == (422, "empty_update")
    for body in ({"add": ["bad\r\nlabel"]}, {"add": [""]}, {"remove": ["x" * 226]}):
        invalid = await client.post(f"/api/messages/{budget}/labels", json=body, headers=auth)
        assert invalid.status_code == 422, body
    unknown = await client.post(
        f"/api/messages/{uuid.uuid4()}/labels", json={"add": ["Work"]}, headers=auth
    )
    assert unknown.status_code == 404

    # Moving out of All Mail into a label folder would take the message out of All
    # Mail on Gmail; the label is what the caller means.
    moved = await client.post(f"/api/messages/{budget}/move", json={"role": "inbox"}, headers=auth)
    assert (moved.status_code, moved.json()["code"]) == (422, "invalid_destination")
    assert "label" in moved.json()["detail"]
    assert not any(c.startswith("UID MOVE") for c in accounts.gmail.commands)
