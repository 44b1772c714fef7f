"""Sending a draft: the outbox entry, the draft's end, and idempotent retries.

Delivery itself is the outbox's business (tests/outbox); these tests stop at the
entry, and wait for the immediate attempt so that nothing runs past the test.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select

from mailsvc.models import OutboxMessage
from mailsvc.runtime import Runtime
from mailsvc.sync.engine import SyncEngine
from tests.draft.conftest import Headers, create_draft, drafts_mailbox
from tests.fixtures import imap_client
from tests.fixtures.app import TokenFactory
from tests.fixtures.dovecot import DovecotServer
from tests.fixtures.mail import SyncTarget, set_account
from tests.fixtures.smtp_server import SmtpRelay
from tests.sync.messages import make_message


@pytest.fixture
async def state(app: FastAPI) -> AsyncIterator[Runtime]:
    """The app's state; immediate sends started by the test are awaited at its end."""
    app_state: Runtime = app.state.mailsvc
    yield app_state
    await app_state.outbox.wait_idle()


async def _send(
    client: httpx.AsyncClient,
    auth: Headers,
    draft_id: str,
    *,
    key: str | None = None,
    json: object = None,
) -> httpx.Response:
    headers = {**auth, **({"Idempotency-Key": key} if key else {})}
    return await client.post(f"/api/compose/{draft_id}/send", headers=headers, json=json)


async def _raw_mime(state: Runtime, entry_id: str) -> bytes:
    async with state.sessionmaker() as session:
        raw = await session.scalar(
            select(OutboxMessage.raw_mime).where(OutboxMessage.id == uuid.UUID(entry_id))
        )
    assert raw is not None
    return raw


async def test_sending_a_reply_draft_queues_it_and_deletes_the_draft(
    state: Runtime,
    client: httpx.AsyncClient,
    auth: Headers,
    target: SyncTarget,
    engine: SyncEngine,
    dovecot: DovecotServer,
    smtp_relay: SmtpRelay,
) -> None:
    root_id, root = make_message(0, subject="Quarterly numbers")
    original_id, original = make_message(1, subject="Re: Quarterly numbers", reply_to_id=root_id)
    await asyncio.to_thread(imap_client.append, dovecot, target.user, "INBOX", [root, original])
    await engine.sync_account(target.tenant_id, target.account_id)
    listed = await client.get("/api/messages", headers=auth)
    (message,) = [m for m in listed.json()["items"] if m["subject"].startswith("Re:")]
    await set_account(client, auth, target, dovecot, smtp_relay, send_options={"save_drafts": True})

    draft = await create_draft(
        client, auth, target,
        to=[{"name": "Test User", "address": target.user.email}],
        text="Numbers attached.\n",
        in_reply_to=message["id"],
        quote_original=True,
    )  # fmt: skip
    assert draft["in_reply_to"] == message["id"]
    assert draft["quote_original"] is True
    upload = await client.post(
        f"/api/drafts/{draft['id']}/attachments",
        files={"file": ("numbers.csv", b"q,amount\n1,100\n", "text/csv")},
        headers=auth,
    )
    assert upload.status_code == 201, upload.text
    assert len(await asyncio.to_thread(drafts_mailbox, dovecot, target)) == 1

    sent = await _send(client, auth, draft["id"])
    assert sent.status_code == 202, sent.text
    entry = sent.json()
    assert entry["status"] in ("queued", "sending", "sent")
    assert entry["account_id"] == str(target.account_id)
    assert entry["draft_id"] == draft["id"]
    assert entry["envelope_to"] == [target.user.email]
    assert entry["subject"] == "Re: Quarterly numbers"  # derived from the original
    assert "Idempotent-Replayed" not in sent.headers

    assert (await client.get(f"/api/drafts/{draft['id']}", headers=auth)).status_code == 404
    assert (await client.get(f"/api/outbox/{entry['id']}", headers=auth)).status_code == 200
    assert await asyncio.to_thread(drafts_mailbox, dovecot, target) == []
    raw = await _raw_mime(state, entry["id"])
    assert f"In-Reply-To: {original_id}".encode() in raw
    assert f"References: {root_id}\r\n {original_id}".encode() in raw
    assert b'filename="numbers.csv"' in raw
    assert b"wrote:\r\n> " in raw  # the original quoted below the new text


async def test_the_same_key_returns_the_first_entry_after_the_draft_is_gone(
    state: Runtime, client: httpx.AsyncClient, auth: Headers, target: SyncTarget
) -> None:
    to = [{"address": target.user.email}]
    draft = await create_draft(client, auth, target, to=to, subject="Once")
    key = f"key-{uuid.uuid4()}"
    first = await _send(client, auth, draft["id"], key=key)
    assert first.status_code == 202, first.text
    assert "Idempotent-Replayed" not in first.headers

    second = await _send(client, auth, draft["id"], key=key)
    assert second.status_code == 202, second.text
    assert second.json()["id"] == first.json()["id"]
    assert second.headers["Idempotent-Replayed"] == "true"

    without_key = await _send(client, auth, draft["id"])
    assert without_key.status_code == 404
    assert without_key.json()["code"] == "draft_not_found"

    other = await create_draft(client, auth, target, to=to, subject="Another")
    reused = await _send(client, auth, other["id"], key=key)
    assert reused.status_code == 409
    assert reused.json()["code"] == "idempotency_key_reused"
    assert (await client.get(f"/api/drafts/{other['id']}", headers=auth)).status_code == 200

    async with state.sessionmaker() as session:
        entries = (
            await session.scalars(
                select(OutboxMessage.id).where(OutboxMessage.tenant_id == target.tenant_id)
            )
        ).all()
    assert [str(entry_id) for entry_id in entries] == [first.json()["id"]]


async def test_an_unfinished_draft_is_refused_at_send_and_kept(
    state: Runtime,
    client: httpx.AsyncClient,
    auth: Headers,
    target: SyncTarget,
    make_token: TokenFactory,
) -> None:
    draft = await create_draft(client, auth, target, subject="No one to send to")
    refused = await _send(client, auth, draft["id"])
    assert refused.status_code == 422, refused.text
    assert refused.json()["errors"][0]["field"] == "draft.to"
    assert (await client.get(f"/api/drafts/{draft['id']}", headers=auth)).status_code == 200

    ready = await create_draft(client, auth, target, to=[{"address": target.user.email}])
    naive = await _send(client, auth, ready["id"], json={"send_at": "2030-01-01T09:00:00"})
    assert naive.status_code == 422
    assert naive.json()["errors"][0]["field"] == "body.send_at"

    no_send_scope = make_token(target.tenant_id, scopes=["mail:read", "mail:write"])
    forbidden = await _send(client, {"Authorization": f"Bearer {no_send_scope}"}, ready["id"])
    assert forbidden.status_code == 403
    assert (await client.get(f"/api/drafts/{ready['id']}", headers=auth)).status_code == 200


async def test_a_draft_can_be_scheduled(
    state: Runtime, client: httpx.AsyncClient, auth: Headers, target: SyncTarget
) -> None:
    draft = await create_draft(client, auth, target, to=[{"address": target.user.email}])
    later = datetime.now(UTC) + timedelta(days=1)
    sent = await _send(client, auth, draft["id"], json={"send_at": later.isoformat()})
    assert sent.status_code == 202, sent.text
    entry = sent.json()
    assert entry["status"] == "queued"
    assert datetime.fromisoformat(entry["send_at"]) == later
    assert (await client.get(f"/api/drafts/{draft['id']}", headers=auth)).status_code == 404
    cancelled = await client.delete(f"/api/outbox/{entry['id']}", headers=auth)
    assert cancelled.status_code == 200
    assert cancelled.json()["status"] == "cancelled"
