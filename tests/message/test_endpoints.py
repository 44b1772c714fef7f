"""Messages API against a real Dovecot and PostgreSQL: lists, reads, downloads, changes."""

from __future__ import annotations

import asyncio
import hashlib
import imaplib
import uuid
from datetime import UTC, datetime
from email.message import EmailMessage
from typing import Any

import httpx
from fastapi import FastAPI

from mailsvc.sync.engine import SyncEngine
from tests.fixtures import imap_client
from tests.fixtures.app import TokenFactory
from tests.fixtures.dovecot import DovecotServer
from tests.fixtures.mail import SyncTarget
from tests.fixtures.search import make_searchable
from tests.sync.messages import make_message

Headers = dict[str, str]


def _message(
    subject: str,
    *,
    sender: str = "Alice Example <alice@example.test>",
    to: str = "Bob <bob@example.test>",
    text: str = "Hello there.\n",
    html: str | None = None,
    attachment: bytes | None = None,
    filename: str = "report.bin",
) -> bytes:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = to
    message["Subject"] = subject
    message["Message-ID"] = f"<{uuid.uuid4().hex}@example.test>"
    message.set_content(text)
    if html is not None:
        message.add_alternative(html, subtype="html")
    if attachment is not None:
        message.add_attachment(
            attachment, maintype="application", subtype="octet-stream", filename=filename
        )
    return message.as_bytes()


async def _append(
    dovecot: DovecotServer, target: SyncTarget, mailbox: str, messages: list[bytes], flags: str = ""
) -> None:
    await asyncio.to_thread(
        imap_client.append, dovecot, target.user, mailbox, messages, flags=flags
    )


async def _sync(engine: SyncEngine, target: SyncTarget) -> None:
    await engine.sync_account(target.tenant_id, target.account_id)


async def _all_pages(
    client: httpx.AsyncClient, auth: Headers, params: dict[str, Any]
) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    cursor = None
    while True:
        query = {**params, **({"cursor": cursor} if cursor else {})}
        response = await client.get("/api/messages", params=query, headers=auth)
        assert response.status_code == 200, response.text
        page = response.json()
        items += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            return items


def _server_flags(dovecot: DovecotServer, target: SyncTarget, mailbox: str) -> dict[str, set[str]]:
    """Subject -> flags of every message in `mailbox`, read by a separate IMAP client."""
    found: dict[str, set[str]] = {}
    with imap_client.imap_session(dovecot, target.user) as imap:
        imap.select(f'"{mailbox}"', readonly=True)
        status, data = imap.uid("FETCH", "1:*", "(FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
        assert status == "OK"
        for part in data:
            if isinstance(part, tuple):
                flags = imaplib.ParseFlags(part[0])
                subject = part[1].decode().split(":", 1)[1].strip()
                found[subject] = {f.decode() for f in flags} - {"\\Recent"}
    return found


async def test_lists_filter_and_page_newest_first(
    app: FastAPI, client: httpx.AsyncClient, auth: Headers, engine: SyncEngine,
    target: SyncTarget, dovecot: DovecotServer,
) -> None:  # fmt: skip
    await _append(dovecot, target, "INBOX", [make_message(i)[1] for i in range(12)])
    await _append(dovecot, target, "INBOX", [_message("Starred one")], flags="\\Flagged \\Seen")
    await _append(dovecot, target, "INBOX", [_message("With file", attachment=b"x" * 500)])
    await _append(dovecot, target, "Archive", [_message("Old news", sender="Carol <c@x.test>")])
    await _sync(engine, target)

    everything = await _all_pages(client, auth, {"limit": 4})
    assert len(everything) == 15
    assert len({m["id"] for m in everything}) == 15
    received = [m["received_at"] for m in everything]
    assert received == sorted(received, reverse=True)

    inbox = await _all_pages(client, auth, {"mailbox": "inbox", "limit": 5})
    assert len(inbox) == 14
    flagged = await _all_pages(client, auth, {"flagged": "true"})
    assert [m["subject"] for m in flagged] == ["Starred one"]
    assert flagged[0]["unread"] is False
    assert len(await _all_pages(client, auth, {"unread": "true"})) == 14
    with_files = await _all_pages(client, auth, {"has_attachments": "true"})
    assert [m["subject"] for m in with_files] == ["With file"]
    # `from` and `to` match words of names and addresses: the search index answers.
    await make_searchable(app, target.tenant_id)
    carol = await _all_pages(client, auth, {"from": "carol", "account_id": str(target.account_id)})
    assert [m["subject"] for m in carol] == ["Old news"]
    bob = await _all_pages(client, auth, {"to": "bob@example.test"})
    assert {m["subject"] for m in bob} == {"Starred one", "With file", "Old news"}
    summary = carol[0]
    assert summary["from"] == {"name": "Carol", "address": "c@x.test"}
    assert summary["to"] == [{"name": "Bob", "address": "bob@example.test"}]


async def test_paging_while_mail_arrives_returns_every_message_once(
    client: httpx.AsyncClient, auth: Headers, engine: SyncEngine, target: SyncTarget,
    dovecot: DovecotServer,
) -> None:  # fmt: skip
    await _append(dovecot, target, "INBOX", [make_message(i)[1] for i in range(25)])
    await _sync(engine, target)
    first = await client.get("/api/messages", params={"limit": 10}, headers=auth)
    seen = [m["id"] for m in first.json()["items"]]
    cursor = first.json()["next_cursor"]

    await _append(dovecot, target, "INBOX", [make_message(100 + i)[1] for i in range(10)])
    await _sync(engine, target)
    while cursor:
        response = await client.get(
            "/api/messages", params={"limit": 10, "cursor": cursor}, headers=auth
        )
        seen += [m["id"] for m in response.json()["items"]]
        cursor = response.json()["next_cursor"]

    assert len(seen) == 25 == len(set(seen))
    newest = await _all_pages(client, auth, {"limit": 50})
    assert len(newest) == 35
    assert set(seen) <= {m["id"] for m in newest}


async def test_a_bad_cursor_or_query_is_a_4xx_naming_the_field(
    client: httpx.AsyncClient, auth: Headers
) -> None:
    response = await client.get("/api/messages", params={"cursor": "nonsense"}, headers=auth)
    assert response.status_code == 400
    assert response.json()["code"] == "invalid_cursor"
    response = await client.get("/api/messages", params={"q": "before:2024-13-45"}, headers=auth)
    assert response.status_code == 422
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["errors"][0]["field"] == "query.q"
    response = await client.get("/api/messages", params={"mailbox": "nowhere"}, headers=auth)
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "query.mailbox"


async def test_a_message_reads_whole_with_safe_html_and_reply_text(
    client: httpx.AsyncClient, auth: Headers, engine: SyncEngine, target: SyncTarget,
    dovecot: DovecotServer,
) -> None:  # fmt: skip
    html = (
        '<p onclick="steal()">Thanks!</p><script>alert(1)</script>'
        '<img src="x" onerror="alert(2)"><a href="javascript:alert(3)">click</a>'
        '<img src="https://tracker.example/pixel.gif"><a href="https://example.test/">ok</a>'
    )
    text = (
        "Thanks, that works for me.\n\n"
        "On Mon, 2 Mar 2026 at 10:00, Bob <bob@example.test> wrote:\n"
        "> Does Tuesday work?\n> Bob\n"
    )
    await _append(dovecot, target, "INBOX", [_message("Re: plan", text=text, html=html)])
    await _sync(engine, target)
    [summary] = await _all_pages(client, auth, {})

    response = await client.get(f"/api/messages/{summary['id']}", headers=auth)

    assert response.status_code == 200
    body = response.json()
    safe = body["html_body"]
    assert "Thanks!" in safe
    for forbidden in ("<script", "alert(1)", "onerror", "onclick", "javascript:", "tracker."):
        assert forbidden not in safe.lower()
    assert 'href="https://example.test/"' in safe
    assert body["remote_content_blocked"] is True
    assert body["reply_text"].strip() == "Thanks, that works for me."
    assert "Does Tuesday work?" in body["text_body"]
    assert body["message_id"]


async def test_raw_source_and_attachment_stream_from_the_server(
    client: httpx.AsyncClient, auth: Headers, engine: SyncEngine, target: SyncTarget,
    dovecot: DovecotServer,
) -> None:  # fmt: skip
    payload = bytes(range(256)) * 4000  # 1 MB, every byte value
    raw = _message("Files", attachment=payload, filename="données.bin")
    await _append(dovecot, target, "INBOX", [raw])
    await _sync(engine, target)
    [summary] = await _all_pages(client, auth, {})
    message = (await client.get(f"/api/messages/{summary['id']}", headers=auth)).json()
    [attachment] = message["attachments"]

    download = await client.get(attachment["download_url"], headers=auth)

    assert download.status_code == 200
    assert hashlib.sha256(download.content).digest() == hashlib.sha256(payload).digest()
    assert download.headers["content-type"] == "application/octet-stream"
    assert "filename*=UTF-8''donn%C3%A9es.bin" in download.headers["content-disposition"]
    assert download.headers["x-content-type-options"] == "nosniff"
    source = await client.get(f"/api/messages/{summary['id']}/raw", headers=auth)
    assert source.status_code == 200
    assert source.headers["content-type"] == "message/rfc822"
    assert source.content.replace(b"\r\n", b"\n") == raw.replace(b"\r\n", b"\n")


async def test_flags_moves_and_deletes_reach_the_server(
    client: httpx.AsyncClient, auth: Headers, engine: SyncEngine, target: SyncTarget,
    dovecot: DovecotServer,
) -> None:  # fmt: skip
    subjects = ["one", "two", "three", "four"]
    await _append(dovecot, target, "INBOX", [_message(s) for s in subjects])
    await _sync(engine, target)
    ids = {m["subject"]: m["id"] for m in await _all_pages(client, auth, {})}

    patched = await client.patch(
        f"/api/messages/{ids['one']}",
        json={"seen": True, "flagged": True, "add_keywords": ["$Work"]},
        headers=auth,
    )
    assert patched.status_code == 200, patched.text
    assert patched.json()["unread"] is False
    assert patched.json()["flagged"] is True
    on_server = await asyncio.to_thread(_server_flags, dovecot, target, "INBOX")
    assert on_server["one"] == {"\\Seen", "\\Flagged", "$Work"}

    moved = await client.post(
        f"/api/messages/{ids['two']}/move", json={"role": "archive"}, headers=auth
    )
    assert moved.status_code == 200, moved.text
    assert moved.json()["id"] == ids["two"]
    archive = await _all_pages(client, auth, {"mailbox": "archive"})
    assert [m["id"] for m in archive] == [ids["two"]]

    deleted = await client.delete(f"/api/messages/{ids['three']}", headers=auth)
    assert deleted.status_code == 204
    gone = await client.delete(f"/api/messages/{ids['four']}?permanent=true", headers=auth)
    assert gone.status_code == 204

    inbox = await asyncio.to_thread(_server_flags, dovecot, target, "INBOX")
    assert set(inbox) == {"one"}
    assert set(await asyncio.to_thread(_server_flags, dovecot, target, "Archive")) == {"two"}
    assert set(await asyncio.to_thread(_server_flags, dovecot, target, "Trash")) == {"three"}
    trash = await _all_pages(client, auth, {"mailbox": "trash"})
    assert [m["subject"] for m in trash] == ["three"]
    assert (await client.get(f"/api/messages/{ids['four']}", headers=auth)).status_code == 404
    # A sync pass afterwards agrees with what the API already stored.
    before = {m["id"]: (m["mailbox_id"], m["flags"]) for m in await _all_pages(client, auth, {})}
    await _sync(engine, target)
    after = {m["id"]: (m["mailbox_id"], m["flags"]) for m in await _all_pages(client, auth, {})}
    assert after == before


async def test_bulk_actions_report_each_id(
    client: httpx.AsyncClient, auth: Headers, engine: SyncEngine, target: SyncTarget,
    dovecot: DovecotServer,
) -> None:  # fmt: skip
    await _append(dovecot, target, "INBOX", [_message(f"bulk {i}") for i in range(6)])
    await _append(dovecot, target, "Archive", [_message(f"filed {i}") for i in range(2)])
    await _sync(engine, target)
    ids = [m["id"] for m in await _all_pages(client, auth, {"mailbox": "inbox"})]
    filed = [m["id"] for m in await _all_pages(client, auth, {"mailbox": "archive"})]
    unknown = str(uuid.uuid4())

    # Two mailboxes of one account in one request.
    read = await client.post(
        "/api/messages/bulk/flags",
        json={"ids": [*ids[:4], *filed, unknown], "flags": {"seen": True}},
        headers=auth,
    )
    assert read.status_code == 200, read.text
    assert set(read.json()["done"]) == {*ids[:4], *filed}
    assert read.json()["not_found"] == [unknown]
    moved = await client.post(
        "/api/messages/bulk/move", json={"ids": ids[:3], "to": {"role": "archive"}}, headers=auth
    )
    assert set(moved.json()["done"]) == set(ids[:3])
    deleted = await client.post(
        "/api/messages/bulk/delete?permanent=true", json={"ids": ids[3:]}, headers=auth
    )
    assert set(deleted.json()["done"]) == set(ids[3:])

    flags = await asyncio.to_thread(_server_flags, dovecot, target, "Archive")
    assert all("\\Seen" in f for f in flags.values())
    assert len(flags) == 5
    assert await asyncio.to_thread(_server_flags, dovecot, target, "INBOX") == {}
    assert len(await _all_pages(client, auth, {"unread": "false"})) == 5


async def test_a_refusing_server_leaves_the_stored_state_as_it_was(
    client: httpx.AsyncClient, auth: Headers, engine: SyncEngine, target: SyncTarget,
    dovecot: DovecotServer,
) -> None:  # fmt: skip
    await asyncio.to_thread(imap_client.run_plain, dovecot, target.user, "CREATE", "Doomed")
    await _append(dovecot, target, "INBOX", [_message("stays")])
    await _sync(engine, target)
    [message] = await _all_pages(client, auth, {})
    mailboxes = (
        await client.get(f"/api/accounts/{target.account_id}/mailboxes", headers=auth)
    ).json()["items"]
    doomed = next(m["id"] for m in mailboxes if m["name"] == "Doomed")
    await asyncio.to_thread(imap_client.run_plain, dovecot, target.user, "DELETE", "Doomed")

    response = await client.post(
        f"/api/messages/{message['id']}/move", json={"mailbox_id": doomed}, headers=auth
    )

    assert response.status_code == 502
    assert response.json()["code"] == "imap_refused"
    assert [m["mailbox_id"] for m in await _all_pages(client, auth, {})] == [message["mailbox_id"]]
    assert set(await asyncio.to_thread(_server_flags, dovecot, target, "INBOX")) == {"stays"}


async def test_every_route_answers_404_for_another_tenants_ids(
    client: httpx.AsyncClient, auth: Headers, engine: SyncEngine, target: SyncTarget,
    dovecot: DovecotServer, make_token: TokenFactory,
) -> None:  # fmt: skip
    await _append(dovecot, target, "INBOX", [_message("private", attachment=b"secret" * 10)])
    await _sync(engine, target)
    [summary] = await _all_pages(client, auth, {})
    message = (await client.get(f"/api/messages/{summary['id']}", headers=auth)).json()
    thread_id = message["thread_id"]
    other = {"Authorization": f"Bearer {make_token('t-someone-else')}"}
    base = f"/api/messages/{summary['id']}"

    answers = [
        await client.get(base, headers=other),
        await client.get(f"{base}/raw", headers=other),
        await client.get(message["attachments"][0]["download_url"], headers=other),
        await client.patch(base, json={"seen": True}, headers=other),
        await client.post(f"{base}/move", json={"role": "archive"}, headers=other),
        await client.delete(base, headers=other),
        await client.get(f"/api/threads/{thread_id}", headers=other),
        await client.get("/api/messages", params={"thread_id": thread_id}, headers=other),
        await client.get("/api/messages", params={"mailbox": summary["mailbox_id"]}, headers=other),
    ]

    assert [a.status_code for a in answers[:8]] == [404] * 7 + [200]
    assert answers[7].json()["items"] == []
    assert answers[8].status_code == 404
    bulk = await client.post(
        "/api/messages/bulk/flags",
        json={"ids": [summary["id"]], "flags": {"seen": True}},
        headers=other,
    )
    assert bulk.json() == {"done": [], "not_found": [summary["id"]]}
    assert (await client.get(base, headers=auth)).json()["unread"] is True


async def test_threads_list_newest_activity_first_with_counts(
    app: FastAPI, client: httpx.AsyncClient, auth: Headers, engine: SyncEngine,
    target: SyncTarget, dovecot: DovecotServer,
) -> None:  # fmt: skip
    parent_id, parent = make_message(1, subject="Lunch?")
    _, reply = make_message(2, subject="Re: Lunch?", reply_to_id=parent_id)
    _, lonely = make_message(3, subject="Unrelated")
    hours = [datetime(2026, 3, 1, hour, tzinfo=UTC) for hour in (9, 10, 11)]
    await asyncio.to_thread(
        imap_client.append, dovecot, target.user, "INBOX", [lonely, parent, reply], received=hours
    )
    await _sync(engine, target)

    response = await client.get("/api/threads", headers=auth)

    assert response.status_code == 200
    threads = response.json()["items"]
    assert [t["message_count"] for t in threads] == [2, 1]
    assert threads[0]["subject"] == "Lunch?"
    assert threads[0]["unread_count"] == 2
    whole = (await client.get(f"/api/threads/{threads[0]['id']}", headers=auth)).json()
    assert [m["subject"] for m in whole["messages"]] == ["Lunch?", "Re: Lunch?"]
    await make_searchable(app, target.tenant_id)
    only_unrelated = await client.get(
        "/api/threads", params={"q": "subject:unrelated"}, headers=auth
    )
    assert [t["subject"] for t in only_unrelated.json()["items"]] == ["Unrelated"]


async def test_cid_images_point_at_their_attachment_download(
    client: httpx.AsyncClient, auth: Headers, engine: SyncEngine, target: SyncTarget,
    dovecot: DovecotServer,
) -> None:  # fmt: skip
    message = EmailMessage()
    message["From"] = "Alice <alice@example.test>"
    message["To"] = "bob@example.test"
    message["Subject"] = "Logo"
    message.set_content("See the logo.")
    message.add_alternative('<p>Logo: <img src="cid:logo.1@example.test"></p>', subtype="html")
    html_part = message.get_payload()[1]
    html_part.add_related(
        b"\x89PNG\r\n\x1a\n" + b"\x00" * 64,
        maintype="image",
        subtype="png",
        cid="<logo.1@example.test>",
    )
    await _append(dovecot, target, "INBOX", [message.as_bytes()])
    await _sync(engine, target)
    [summary] = await _all_pages(client, auth, {})

    body = (await client.get(f"/api/messages/{summary['id']}", headers=auth)).json()

    [image] = body["attachments"]
    assert image["content_id"] == "logo.1@example.test"
    assert f'src="{image["download_url"]}"' in body["html_body"]
    assert body["remote_content_blocked"] is False
    download = await client.get(image["download_url"], headers=auth)
    assert download.content.startswith(b"\x89PNG")
    assert download.headers["content-type"] == "image/png"
