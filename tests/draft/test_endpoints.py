"""Drafts API against the real PostgreSQL: save, read, list, delete, attach, isolate."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from mailsvc.runtime import Runtime
from tests.draft.conftest import Headers, create_draft, draft_body
from tests.fixtures.app import TokenFactory
from tests.fixtures.dovecot import DovecotServer
from tests.fixtures.mail import SyncTarget, set_account
from tests.fixtures.smtp_server import SmtpRelay


def _when(value: str) -> datetime:
    return datetime.fromisoformat(value)


async def _drafts(client: httpx.AsyncClient, auth: Headers, **params: Any) -> list[dict[str, Any]]:
    response = await client.get("/api/drafts", params=params, headers=auth)
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


async def test_create_update_read_list_and_delete(
    client: httpx.AsyncClient, auth: Headers, target: SyncTarget
) -> None:
    # Unfinished: no recipients yet.
    first = await create_draft(client, auth, target, subject="Plan für März ✓")
    assert first["to"] == []
    assert first["subject"] == "Plan für März ✓"
    assert first["from"] is None
    assert first["attachments"] == []

    saved = await client.post(
        "/api/compose/draft",
        json=draft_body(
            target,
            id=first["id"],
            **{"from": {"name": "Ada", "address": target.user.email}},
            to=[{"name": "Zoë Ådne", "address": "zoe@example.test"}],
            subject="Plan",
            text="Hello\n",
            headers={"X-Campaign": " spring "},
        ),
        headers=auth,
    )
    assert saved.status_code == 200, saved.text
    updated = saved.json()
    assert updated["id"] == first["id"]
    assert updated["to"] == [{"name": "Zoë Ådne", "address": "zoe@example.test"}]
    assert updated["from"] == {"name": "Ada", "address": target.user.email}
    assert updated["headers"] == {"X-Campaign": "spring"}
    assert _when(updated["updated_at"]) > _when(first["updated_at"])

    created = await client.post(
        "/api/compose/draft", json=draft_body(target, subject="Second"), headers=auth
    )
    assert created.status_code == 201, created.text
    second = created.json()
    assert created.headers["Location"] == f"/api/drafts/{second['id']}"

    replaced = await client.put(
        f"/api/drafts/{first['id']}", json=draft_body(target, subject="Replaced"), headers=auth
    )
    assert replaced.status_code == 200, replaced.text
    assert replaced.json()["to"] == []  # PUT replaces: fields left out are cleared
    assert replaced.json()["text"] is None

    got = await client.get(f"/api/drafts/{first['id']}", headers=auth)
    assert got.status_code == 200
    assert got.json()["subject"] == "Replaced"

    listed = await _drafts(client, auth, account_id=str(target.account_id))
    assert [d["id"] for d in listed] == [second["id"], first["id"]]  # newest first
    assert await _drafts(client, auth, account_id=str(uuid.uuid4())) == []

    deleted = await client.delete(f"/api/drafts/{first['id']}", headers=auth)
    assert deleted.status_code == 204
    assert (await client.get(f"/api/drafts/{first['id']}", headers=auth)).status_code == 404
    assert (await client.delete(f"/api/drafts/{first['id']}", headers=auth)).status_code == 404
    assert [d["id"] for d in await _drafts(client, auth)] == [second["id"]]


async def test_list_pages_with_a_cursor(
    client: httpx.AsyncClient, auth: Headers, target: SyncTarget
) -> None:
    made = [(await create_draft(client, auth, target, subject=f"n{i}"))["id"] for i in range(5)]
    seen: list[str] = []
    cursor = None
    while True:
        params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        response = await client.get("/api/drafts", params=params, headers=auth)
        assert response.status_code == 200, response.text
        page = response.json()
        seen += [d["id"] for d in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == made[::-1]
    # Not cursor-shaped: the parameter's schema refuses it, naming the field.
    malformed = await client.get("/api/drafts", params={"cursor": "garbage!"}, headers=auth)
    assert malformed.status_code == 422
    assert malformed.json()["errors"][0]["field"] == "query.cursor"
    # Cursor-shaped, but not one the server issued.
    bad = await client.get("/api/drafts", params={"cursor": "Z2FyYmFnZQ"}, headers=auth)
    assert bad.status_code == 400
    assert bad.json()["code"] == "invalid_cursor"


async def test_another_tenants_draft_is_not_found_on_every_route(
    client: httpx.AsyncClient, auth: Headers, target: SyncTarget, make_token: TokenFactory
) -> None:
    draft = await create_draft(client, auth, target, to=[{"address": "zoe@example.test"}])
    upload = await client.post(
        f"/api/drafts/{draft['id']}/attachments",
        files={"file": ("a.txt", b"hello", "text/plain")},
        headers=auth,
    )
    assert upload.status_code == 201, upload.text
    attachment_id = upload.json()["id"]

    other = {"Authorization": f"Bearer {make_token(f'other-{uuid.uuid4().hex[:8]}')}"}
    base = f"/api/drafts/{draft['id']}"
    body = draft_body(target, subject="hijack")
    answers = [
        await client.get(base, headers=other),
        await client.put(base, json=body, headers=other),
        await client.post("/api/compose/draft", json={**body, "id": draft["id"]}, headers=other),
        await client.post(
            f"{base}/attachments", files={"file": ("b.txt", b"x", "text/plain")}, headers=other
        ),
        await client.delete(f"{base}/attachments/{attachment_id}", headers=other),
        await client.post(f"/api/compose/{draft['id']}/send", headers=other),
        await client.post(
            f"/api/compose/{draft['id']}/send", headers={**other, "Idempotency-Key": "k-1"}
        ),
        await client.delete(base, headers=other),
    ]
    for answer in answers:
        assert answer.status_code == 404, (answer.request.method, answer.request.url, answer.text)
        assert answer.headers["content-type"] == "application/problem+json"
        assert answer.json()["code"] == "draft_not_found"
    assert await _drafts(client, other) == []
    # A draft for an account of another tenant cannot be made either.
    foreign = await client.post("/api/compose", json=body, headers=other)
    assert foreign.status_code == 422
    assert foreign.json()["errors"][0]["field"] == "body.account_id"

    kept = await client.get(base, headers=auth)
    assert kept.status_code == 200
    assert kept.json()["subject"] is None
    assert len(kept.json()["attachments"]) == 1


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"subject": "Hi\r\nBcc: eve@example.test"}, "body.subject"),
        ({"to": [{"name": "Zoë\nBcc: eve@example.test", "address": "z@example.test"}]},
         "body.to[0].name"),
        ({"cc": [{"address": "z@example.test"}, {"address": "not an address"}]},
         "body.cc[1].address"),
        ({"headers": {"X-Tag": "a\r\nBcc: eve@example.test"}}, "body.headers.X-Tag"),
        ({"headers": {"Bcc": "eve@example.test"}}, "body.headers.Bcc"),
        ({"from": {"address": "someone-else@example.test"}}, "body.from.address"),
        ({"in_reply_to": "0192f5d1-6c1e-7a55-9d0c-1f2a3b4c5d6e"}, "body.in_reply_to"),
    ],
)  # fmt: skip
async def test_unsafe_or_invalid_values_are_refused_and_nothing_is_stored(
    client: httpx.AsyncClient,
    auth: Headers,
    target: SyncTarget,
    fields: dict[str, Any],
    field: str,
) -> None:
    created = await client.post("/api/compose", json=draft_body(target, **fields), headers=auth)
    assert created.status_code == 422, created.text
    assert created.json()["errors"][0]["field"] == field
    assert await _drafts(client, auth) == []

    draft = await create_draft(client, auth, target, subject="Safe")
    for request in (
        client.put(f"/api/drafts/{draft['id']}", json=draft_body(target, **fields), headers=auth),
        client.post(
            "/api/compose/draft", json=draft_body(target, id=draft["id"], **fields), headers=auth
        ),
    ):
        answer = await request
        assert answer.status_code == 422, answer.text
        assert answer.json()["errors"][0]["field"] == field
    unchanged = (await client.get(f"/api/drafts/{draft['id']}", headers=auth)).json()
    assert unchanged["subject"] == "Safe"
    assert unchanged["updated_at"] == draft["updated_at"]


async def test_aliases_may_send_and_a_draft_stays_with_its_account(
    client: httpx.AsyncClient,
    auth: Headers,
    target: SyncTarget,
    dovecot: DovecotServer,
    smtp_relay: SmtpRelay,
) -> None:
    alias = "sales@example.test"
    refused = await client.post(
        "/api/compose", json=draft_body(target, **{"from": {"address": alias}}), headers=auth
    )
    assert refused.status_code == 422
    await set_account(client, auth, target, dovecot, smtp_relay, send_options={"aliases": [alias]})
    draft = await create_draft(client, auth, target, **{"from": {"address": "Sales@Example.test"}})
    assert draft["from"]["address"].lower() == alias

    moved = await client.put(
        f"/api/drafts/{draft['id']}",
        json={"account_id": str(uuid.uuid4()), "subject": "x"},
        headers=auth,
    )
    assert moved.status_code == 422
    assert moved.json()["errors"][0]["field"] == "body.account_id"


async def test_attachments_upload_in_multipart_and_list_without_content(
    client: httpx.AsyncClient, auth: Headers, target: SyncTarget
) -> None:
    draft = await create_draft(client, auth, target, html='<p><img src="cid:logo@x"></p>')
    base = f"/api/drafts/{draft['id']}/attachments"
    pdf = b"%PDF-1.4\n" + bytes(range(256)) * 40
    report = await client.post(
        base, files={"file": ("bericht-märz.pdf", pdf, "application/pdf")}, headers=auth
    )
    assert report.status_code == 201, report.text
    assert report.json() == {
        "id": report.json()["id"],
        "filename": "bericht-märz.pdf",
        "content_type": "application/pdf",
        "size": len(pdf),
        "content_id": None,
    }
    logo = await client.post(
        base,
        files={"file": ("logo.png", b"\x89PNG\r\n\x1a\n" + b"\0" * 100, "image/png")},
        data={"content_id": "<logo@x>"},
        headers=auth,
    )
    assert logo.status_code == 201, logo.text
    assert logo.json()["content_id"] == "logo@x"

    again = await client.post(
        base,
        files={"file": ("logo2.png", b"png", "image/png")},
        data={"content_id": "logo@x"},
        headers=auth,
    )
    assert again.status_code == 422
    assert again.json()["errors"][0]["field"] == "body.content_id"
    bad_name = await client.post(
        base, files={"file": ("a\u2028Bcc.txt", b"x", "text/plain")}, headers=auth
    )
    assert bad_name.status_code == 422
    assert bad_name.json()["errors"][0]["field"] == "body.file.filename"
    multipart = await client.post(
        base, files={"file": ("x.bin", b"x", "multipart/mixed")}, headers=auth
    )
    assert multipart.status_code == 422
    assert multipart.json()["errors"][0]["field"] == "body.file.content_type"

    got = (await client.get(f"/api/drafts/{draft['id']}", headers=auth)).json()
    assert [a["filename"] for a in got["attachments"]] == ["bericht-märz.pdf", "logo.png"]
    assert all("content" not in a for a in got["attachments"])
    assert _when(got["updated_at"]) > _when(draft["updated_at"])  # a new version of the draft

    removed = await client.delete(f"{base}/{report.json()['id']}", headers=auth)
    assert removed.status_code == 204
    gone = await client.delete(f"{base}/{report.json()['id']}", headers=auth)
    assert gone.status_code == 404
    assert gone.json()["code"] == "attachment_not_found"
    got = (await client.get(f"/api/drafts/{draft['id']}", headers=auth)).json()
    assert [a["filename"] for a in got["attachments"]] == ["logo.png"]


async def test_attachments_are_capped_in_total(
    app: FastAPI,
    client: httpx.AsyncClient,
    auth: Headers,
    target: SyncTarget,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    state: Runtime = app.state.mailsvc
    cap = 64 * 1024
    monkeypatch.setattr(state.settings, "send_max_message_bytes", cap)
    draft = await create_draft(client, auth, target)
    base = f"/api/drafts/{draft['id']}/attachments"

    first = await client.post(base, files={"file": ("a.bin", b"a" * 40_000)}, headers=auth)
    assert first.status_code == 201, first.text
    assert first.json()["content_type"] == "application/octet-stream"
    too_much = await client.post(base, files={"file": ("b.bin", b"b" * 30_000)}, headers=auth)
    assert too_much.status_code == 413, too_much.text
    assert too_much.headers["content-type"] == "application/problem+json"
    assert too_much.json()["code"] == "attachment_too_large"
    exactly = await client.post(
        base, files={"file": ("c.bin", b"c" * (cap - 40_000))}, headers=auth
    )
    assert exactly.status_code == 201, exactly.text
    one_more = await client.post(base, files={"file": ("d.bin", b"d")}, headers=auth)
    assert one_more.status_code == 413

    got = (await client.get(f"/api/drafts/{draft['id']}", headers=auth)).json()
    assert [a["size"] for a in got["attachments"]] == [40_000, cap - 40_000]
