"""Sending through the API, end to end: aiosmtpd relay -> LMTP -> Dovecot -> sync -> API."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from fastapi import FastAPI
from sqlalchemy import func, select, update

from mailsvc.kit.ratelimit import Window, WindowLimiter
from mailsvc.models import Change, OutboxMessage
from mailsvc.outbox.dispatch import send_outbox, sweep_outbox
from mailsvc.runtime import Runtime
from mailsvc.sync.engine import SyncEngine
from tests.fixtures import imap_client
from tests.fixtures.dovecot import DovecotServer
from tests.fixtures.mail import SyncTarget, set_account
from tests.fixtures.net import free_port
from tests.fixtures.smtp_server import SmtpRelay
from tests.outbox.conftest import run_send_jobs

Headers = dict[str, str]
PDF = b"%PDF-1.4\n" + bytes(range(256)) * 64


def _body(target: SyncTarget, recipient: SyncTarget, **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "account_id": str(target.account_id),
        "from": {"name": "Zoë Ådne-Øberg", "address": target.user.email},
        "to": [{"name": "Получатель", "address": recipient.user.email}],
        "subject": "Quartalsbericht für März ✓",
        "text": "Hallo,\nder Bericht ist angehängt.\n",
        "html": "<p>Hallo,</p><p>der <b>Bericht</b> ist angehängt.</p>",
        "attachments": [
            {
                "filename": "bericht-märz.pdf",
                "content_type": "application/pdf",
                "content_base64": base64.b64encode(PDF).decode(),
            }
        ],
    }
    body.update(overrides)
    return body


async def _send(
    client: httpx.AsyncClient, auth: Headers, body: dict[str, Any], key: str | None = None
) -> httpx.Response:
    headers = {**auth, **({"Idempotency-Key": key} if key else {})}
    return await client.post("/api/send", json=body, headers=headers)


async def _entry(client: httpx.AsyncClient, auth: Headers, entry_id: str) -> dict[str, Any]:
    response = await client.get(f"/api/outbox/{entry_id}", headers=auth)
    assert response.status_code == 200, response.text
    entry: dict[str, Any] = response.json()
    return entry


def _delivered_to(relay: SmtpRelay, message_id: str) -> int:
    return sum(1 for m in relay.received if message_id.encode() in m.data)


async def test_a_sent_message_arrives_whole_and_is_filed_in_sent(
    app: FastAPI,
    client: httpx.AsyncClient,
    auth: Headers,
    engine: SyncEngine,
    target: SyncTarget,
    recipient: SyncTarget,
    dovecot: DovecotServer,
    smtp_relay: SmtpRelay,
) -> None:
    response = await _send(client, auth, _body(target, recipient))
    assert response.status_code == 202, response.text
    entry_id = response.json()["id"]
    await run_send_jobs(app, engine)
    entry = await _entry(client, auth, entry_id)
    assert entry["status"] == "sent", entry
    assert entry["last_smtp_code"] == 250
    assert entry["sent_copy_saved"] is True
    assert entry["envelope_to"] == [recipient.user.email]

    await engine.sync_account(recipient.tenant_id, recipient.account_id)
    listed = await client.get(
        "/api/messages", params={"account_id": str(recipient.account_id)}, headers=auth
    )
    (item,) = listed.json()["items"]
    assert item["subject"] == "Quartalsbericht für März ✓"
    assert item["from"] == {"name": "Zoë Ådne-Øberg", "address": target.user.email}
    message = (await client.get(f"/api/messages/{item['id']}", headers=auth)).json()
    assert message["message_id"] == entry["message_id"].strip("<>")
    assert message["text_body"].strip() == "Hallo,\nder Bericht ist angehängt."
    assert "<b>Bericht</b>" in message["html_body"]
    (attachment,) = message["attachments"]
    assert attachment["filename"] == "bericht-märz.pdf"
    download = await client.get(attachment["download_url"], headers=auth)
    assert hashlib.sha256(download.content).digest() == hashlib.sha256(PDF).digest()

    # The sender's Sent mailbox holds the very message.
    sent = await asyncio.to_thread(imap_client.server_state, dovecot, target.user, ["Sent"])
    assert len(sent) == 1
    assert {flags for _, _, flags in sent} == {frozenset({"\\Seen"})}
    assert _delivered_to(smtp_relay, entry["message_id"]) == 1


async def test_the_same_key_sends_once_and_another_body_is_a_conflict(
    app: FastAPI,
    client: httpx.AsyncClient,
    auth: Headers,
    engine: SyncEngine,
    target: SyncTarget,
    recipient: SyncTarget,
    smtp_relay: SmtpRelay,
) -> None:
    body = _body(target, recipient, attachments=[])
    key = f"key-{uuid.uuid4()}"
    first, second = await _send(client, auth, body, key), await _send(client, auth, body, key)
    assert first.status_code == second.status_code == 202
    assert first.json()["id"] == second.json()["id"]
    assert "Idempotent-Replayed" not in first.headers
    assert second.headers["Idempotent-Replayed"] == "true"
    other = await _send(client, auth, {**body, "subject": "changed"}, key)
    assert other.status_code == 409
    assert other.json()["code"] == "idempotency_key_reused"

    await run_send_jobs(app, engine)
    # A job for the entry run twice more, after it was sent, sends nothing more.
    state: Runtime = app.state.mailsvc
    ctx = {"outbox_sender": state.outbox.sender}
    entry_id = first.json()["id"]
    assert await send_outbox(ctx, target.tenant_id, entry_id) is None
    assert await send_outbox(ctx, target.tenant_id, entry_id) is None
    entry = await _entry(client, auth, entry_id)
    assert (entry["status"], entry["attempts"]) == ("sent", 1)
    assert _delivered_to(smtp_relay, entry["message_id"]) == 1


async def test_two_attempts_racing_for_a_due_entry_deliver_once(
    app: FastAPI,
    client: httpx.AsyncClient,
    auth: Headers,
    target: SyncTarget,
    recipient: SyncTarget,
    smtp_relay: SmtpRelay,
) -> None:
    later = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    response = await _send(client, auth, _body(target, recipient, send_at=later, attachments=[]))
    assert response.status_code == 202
    assert response.json()["status"] == "queued"
    entry_id = uuid.UUID(response.json()["id"])
    state: Runtime = app.state.mailsvc
    async with state.sessionmaker() as session, session.begin():
        row = await session.get(OutboxMessage, entry_id)
        assert row is not None
        row.next_attempt_at = datetime.now(UTC) - timedelta(seconds=1)

    sender = state.outbox.sender
    results = await asyncio.gather(*(sender.attempt(target.tenant_id, entry_id) for _ in range(4)))
    assert (results.count("sent"), results.count(None)) == (1, 3)
    entry = await _entry(client, auth, str(entry_id))
    assert _delivered_to(smtp_relay, entry["message_id"]) == 1


async def test_4xx_replies_are_retried_until_delivered_and_5xx_fails(
    app: FastAPI,
    client: httpx.AsyncClient,
    auth: Headers,
    engine: SyncEngine,
    target: SyncTarget,
    recipient: SyncTarget,
    smtp_relay: SmtpRelay,
) -> None:
    smtp_relay.fail_next("451 4.3.0 try again later", times=2)
    retried = await _send(client, auth, _body(target, recipient, attachments=[]))
    await run_send_jobs(app, engine)
    entry = await _entry(client, auth, retried.json()["id"])
    assert (entry["status"], entry["attempts"], entry["last_smtp_code"]) == ("sent", 3, 250)
    assert _delivered_to(smtp_relay, entry["message_id"]) == 1

    smtp_relay.fail_next("550 5.1.1 mailbox unavailable")
    refused = await _send(client, auth, _body(target, recipient, attachments=[]))
    await run_send_jobs(app, engine)
    failed = await _entry(client, auth, refused.json()["id"])
    assert (failed["status"], failed["attempts"], failed["last_smtp_code"]) == ("failed", 1, 550)
    assert failed["last_smtp_reply"] == "5.1.1 mailbox unavailable"
    assert failed["next_attempt_at"] is None

    # Every status change is in the change log, in order.
    state: Runtime = app.state.mailsvc
    async with state.sessionmaker() as session:
        types = (
            await session.scalars(
                select(Change.type)
                .where(Change.payload["outbox_id"].astext == retried.json()["id"])
                .order_by(Change.seq)
            )
        ).all()
    assert types == [
        "outbox.queued",
        "outbox.sending",
        "outbox.queued",
        "outbox.sending",
        "outbox.queued",
        "outbox.sending",
        "outbox.sent",
    ]


async def test_header_injection_is_refused_and_nothing_is_sent(
    app: FastAPI,
    client: httpx.AsyncClient,
    auth: Headers,
    target: SyncTarget,
    recipient: SyncTarget,
    smtp_relay: SmtpRelay,
) -> None:
    received_before = len(smtp_relay.received)
    attempts = {
        "body.subject": {"subject": "Hello\r\nBcc: victim@example.test"},
        "body.to[0].name": {
            "to": [{"name": "Eve\nBcc: victim@example.test", "address": recipient.user.email}]
        },
        "body.headers.X-Campaign": {"headers": {"X-Campaign": "a\r\nBcc: victim@example.test"}},
        "body.headers": {"headers": {"Bcc": "victim@example.test"}},
    }
    for field, change in attempts.items():
        response = await _send(client, auth, _body(target, recipient, attachments=[], **change))
        assert response.status_code == 422, response.text
        assert next(e["field"] for e in response.json()["errors"]).startswith(field), field
    state: Runtime = app.state.mailsvc
    await state.outbox.wait_idle()
    async with state.sessionmaker() as session:
        stored = await session.scalar(
            select(func.count())
            .select_from(OutboxMessage)
            .where(OutboxMessage.account_id == target.account_id)
        )
    assert stored == 0
    assert len(smtp_relay.received) == received_before


async def test_scheduled_sends_can_be_cancelled_and_limits_answer_429(
    app: FastAPI,
    client: httpx.AsyncClient,
    auth: Headers,
    target: SyncTarget,
    recipient: SyncTarget,
) -> None:
    later = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    scheduled = await _send(client, auth, _body(target, recipient, send_at=later, attachments=[]))
    entry_id = scheduled.json()["id"]
    assert scheduled.json()["next_attempt_at"] is not None
    cancelled = await client.delete(f"/api/outbox/{entry_id}", headers=auth)
    assert cancelled.status_code == 200
    assert cancelled.json()["status"] == "cancelled"
    again = await client.delete(f"/api/outbox/{entry_id}", headers=auth)
    assert again.status_code == 409
    listed = await client.get(
        "/api/outbox", params={"status": "cancelled", "account_id": str(target.account_id)},
        headers=auth,
    )  # fmt: skip
    assert [item["id"] for item in listed.json()["items"]] == [entry_id]

    state: Runtime = app.state.mailsvc
    original = state.send_limiter
    state.send_limiter = WindowLimiter(
        state.redis, prefix=f"test:send:{uuid.uuid4().hex}", windows=[Window(60, 2)]
    )
    try:
        statuses = [
            (await _send(client, auth, _body(target, recipient, send_at=later, attachments=[])))
            for _ in range(3)
        ]
    finally:
        state.send_limiter = original
    assert [response.status_code for response in statuses] == [202, 202, 429]
    assert statuses[2].json()["code"] == "send_limit_exceeded"
    assert int(statuses[2].headers["Retry-After"]) >= 1


async def test_a_reply_threads_with_its_original_on_both_sides(
    app: FastAPI,
    client: httpx.AsyncClient,
    auth: Headers,
    engine: SyncEngine,
    target: SyncTarget,
    recipient: SyncTarget,
) -> None:
    original = await _send(client, auth, _body(target, recipient, attachments=[]))
    await run_send_jobs(app, engine)
    await engine.sync_account(recipient.tenant_id, recipient.account_id)
    inbox = await client.get(
        "/api/messages",
        params={"account_id": str(recipient.account_id), "mailbox": "inbox"},
        headers=auth,
    )
    (received,) = inbox.json()["items"]

    reply = {
        "account_id": str(recipient.account_id),
        "to": [{"address": target.user.email}],
        "text": "Danke!",
        "in_reply_to": received["id"],
        "quote_original": True,
    }
    sent_reply = await _send(client, auth, reply)
    assert sent_reply.status_code == 202, sent_reply.text
    assert sent_reply.json()["subject"] == "Re: Quartalsbericht für März ✓"
    await run_send_jobs(app, engine)
    assert (await _entry(client, auth, sent_reply.json()["id"]))["status"] == "sent"
    for side in (target, recipient):
        await engine.sync_account(side.tenant_id, side.account_id)
        listed = await client.get(
            "/api/messages", params={"account_id": str(side.account_id)}, headers=auth
        )
        items = listed.json()["items"]
        assert len(items) == 2, items  # the original and the reply, INBOX and Sent
        assert len({item["thread_id"] for item in items}) == 1, items
    # The replied-to message is flagged answered on the recipient's side.
    answered = await client.get(f"/api/messages/{received['id']}", headers=auth)
    assert "\\Answered" in answered.json()["flags"]
    assert original.json()["status"] in {"queued", "sending", "sent"}


async def test_a_lost_reply_is_checked_against_the_sent_mailbox_before_a_retry(
    app: FastAPI,
    client: httpx.AsyncClient,
    auth: Headers,
    engine: SyncEngine,
    target: SyncTarget,
    recipient: SyncTarget,
    dovecot: DovecotServer,
    smtp_relay: SmtpRelay,
) -> None:
    # The server takes the message, then the connection drops before its reply.
    smtp_relay.drop_after_data(deliver=True)
    response = await _send(client, auth, _body(target, recipient, attachments=[]))
    entry_id = response.json()["id"]
    state: Runtime = app.state.mailsvc
    await state.outbox.wait_idle()
    entry = await _entry(client, auth, entry_id)
    assert (entry["status"], entry["attempts"]) == ("queued", 1)
    assert _delivered_to(smtp_relay, entry["message_id"]) == 1

    # A provider that files sent mail itself has the copy in Sent by now.
    async with state.sessionmaker() as session:
        raw = await session.scalar(
            select(OutboxMessage.raw_mime).where(OutboxMessage.id == uuid.UUID(entry_id))
        )
    assert raw is not None
    await asyncio.to_thread(imap_client.append, dovecot, target.user, "Sent", [raw])

    await run_send_jobs(app, engine)
    entry = await _entry(client, auth, entry_id)
    assert (entry["status"], entry["attempts"]) == ("sent", 2)
    assert entry["sent_copy_saved"] is True
    assert _delivered_to(smtp_relay, entry["message_id"]) == 1  # not sent a second time


async def test_a_sent_copy_that_could_not_be_filed_is_filed_by_the_sweep_once(
    app: FastAPI,
    client: httpx.AsyncClient,
    auth: Headers,
    engine: SyncEngine,
    target: SyncTarget,
    recipient: SyncTarget,
    dovecot: DovecotServer,
    smtp_relay: SmtpRelay,
) -> None:
    # SMTP works; the IMAP server is unreachable when the copy is to be filed.
    unreachable = {
        "host": dovecot.host, "port": free_port(), "security": "tls",
        "username": target.user.username, "password": target.user.password,
    }  # fmt: skip
    await set_account(client, auth, target, dovecot, smtp_relay, imap=unreachable)
    response = await _send(client, auth, _body(target, recipient, attachments=[]))
    state: Runtime = app.state.mailsvc
    await state.outbox.wait_idle()
    entry = await _entry(client, auth, response.json()["id"])
    assert (entry["status"], entry["sent_copy_saved"]) == ("sent", False)
    assert "filing the copy failed" in entry["last_error"]

    await set_account(client, auth, target, dovecot, smtp_relay)  # IMAP reachable again
    async with state.sessionmaker.begin() as session:
        # As if the pause before the next try had passed.
        await session.execute(
            update(OutboxMessage)
            .where(OutboxMessage.id == uuid.UUID(entry["id"]))
            .values(updated_at=datetime.now(UTC) - timedelta(hours=1))
        )
    ctx = {"sessionmaker": state.sessionmaker, "redis": state.arq}
    assert await sweep_outbox(ctx) >= 1
    await run_send_jobs(app, engine)
    entry = await _entry(client, auth, entry["id"])
    assert entry["sent_copy_saved"] is True
    assert await sweep_outbox(ctx) == 0  # nothing left to file
    sent = await asyncio.to_thread(imap_client.server_state, dovecot, target.user, ["Sent"])
    assert len(sent) == 1
    assert _delivered_to(smtp_relay, entry["message_id"]) == 1
