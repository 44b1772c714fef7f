"""Retrying an outbox entry now (`POST /api/outbox/{id}/retry`), end to end through the
aiosmtpd relay and Dovecot: a scheduled or failed message goes out at once, once."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select, update

from mailsvc.config import Settings
from mailsvc.models import OutboxMessage
from mailsvc.outbox.dispatch import send_outbox
from mailsvc.runtime import Runtime
from tests.fixtures import imap_client
from tests.fixtures.app import TokenFactory
from tests.fixtures.dovecot import DovecotServer
from tests.fixtures.mail import SyncTarget
from tests.fixtures.smtp_server import SmtpRelay

Headers = dict[str, str]


def _body(target: SyncTarget, recipient: SyncTarget, **overrides: Any) -> dict[str, Any]:
    return {
        "account_id": str(target.account_id),
        "to": [{"address": recipient.user.email}],
        "subject": "Retry me",
        "text": "Hallo\n",
        **overrides,
    }


def _later() -> str:
    return (datetime.now(UTC) + timedelta(hours=1)).isoformat()


async def _send(client: httpx.AsyncClient, auth: Headers, body: dict[str, Any]) -> dict[str, Any]:
    response = await client.post("/api/send", json=body, headers=auth)
    assert response.status_code == 202, response.text
    entry: dict[str, Any] = response.json()
    return entry


async def _retry(client: httpx.AsyncClient, auth: Headers, entry_id: str) -> httpx.Response:
    return await client.post(f"/api/outbox/{entry_id}/retry", headers=auth)


async def _entry(client: httpx.AsyncClient, auth: Headers, entry_id: str) -> dict[str, Any]:
    response = await client.get(f"/api/outbox/{entry_id}", headers=auth)
    assert response.status_code == 200, response.text
    entry: dict[str, Any] = response.json()
    return entry


async def _feed(client: httpx.AsyncClient, auth: Headers, entry_id: str) -> list[tuple[str, int]]:
    """The entry's events in the change feed: (type, attempts), oldest first."""
    response = await client.get("/api/changes", params={"since": "0"}, headers=auth)
    assert response.status_code == 200, response.text
    return [
        (event["type"], event["data"]["attempts"])
        for event in response.json()["events"]
        if event["type"].startswith("outbox.") and event["data"]["outbox_id"] == entry_id
    ]


def _delivered(relay: SmtpRelay, message_id: str) -> int:
    return sum(1 for message in relay.received if message_id.encode() in message.data)


async def test_a_scheduled_send_retried_now_goes_out_at_once_and_once(
    app: FastAPI,
    client: httpx.AsyncClient,
    auth: Headers,
    target: SyncTarget,
    recipient: SyncTarget,
    smtp_relay: SmtpRelay,
) -> None:
    scheduled = await _send(client, auth, _body(target, recipient, send_at=_later()))
    assert scheduled["status"] == "queued"

    response = await _retry(client, auth, scheduled["id"])
    assert response.status_code == 202, response.text
    retried = response.json()
    assert (retried["status"], retried["attempts"]) == ("queued", 0)
    assert datetime.fromisoformat(retried["next_attempt_at"]) <= datetime.now(UTC)

    # Started by this process right after the commit, as an immediate send is: no job
    # runs here, and the job scheduled for the hour is still waiting.
    state: Runtime = app.state.mailsvc
    await state.outbox.wait_idle()
    entry = await _entry(client, auth, scheduled["id"])
    assert (entry["status"], entry["attempts"], entry["last_smtp_code"]) == ("sent", 1, 250)
    assert entry["message_id"] == scheduled["message_id"]
    assert _delivered(smtp_relay, entry["message_id"]) == 1

    # The job scheduled for `send_at` finds the entry sent and does nothing.
    ctx = {"outbox_sender": state.outbox.sender}
    assert await send_outbox(ctx, target.tenant_id, scheduled["id"]) is None
    assert _delivered(smtp_relay, entry["message_id"]) == 1
    assert await _feed(client, auth, scheduled["id"]) == [
        ("outbox.queued", 0),
        ("outbox.queued", 0),  # the retry: due now
        ("outbox.sending", 1),
        ("outbox.sent", 1),
    ]


async def test_a_failed_send_retried_after_the_server_is_fixed_arrives_once(
    app: FastAPI,
    client: httpx.AsyncClient,
    auth: Headers,
    settings: Settings,
    target: SyncTarget,
    recipient: SyncTarget,
    smtp_relay: SmtpRelay,
) -> None:
    state: Runtime = app.state.mailsvc
    smtp_relay.fail_next("550 5.7.1 relaying denied")
    sent = await _send(client, auth, _body(target, recipient))
    await state.outbox.wait_idle()
    failed = await _entry(client, auth, sent["id"])
    assert (failed["status"], failed["attempts"], failed["last_smtp_code"]) == ("failed", 1, 550)
    assert _delivered(smtp_relay, sent["message_id"]) == 0

    # The relay takes mail again (`fail_next` refused one message only).
    response = await _retry(client, auth, sent["id"])
    assert response.status_code == 202, response.text
    retried = response.json()
    assert retried["status"] == "queued"
    # A fresh budget of attempts beyond the one made (the count goes on, so each
    # attempt's job id is new); the server's last answer stays until the next one.
    assert (retried["attempts"], retried["max_attempts"]) == (1, 1 + settings.send_max_attempts)
    assert retried["last_smtp_code"] == 550
    assert retried["message_id"] == sent["message_id"]

    await state.outbox.wait_idle()
    entry = await _entry(client, auth, sent["id"])
    assert (entry["status"], entry["attempts"], entry["last_smtp_code"]) == ("sent", 2, 250)
    assert entry["message_id"] == sent["message_id"]
    assert _delivered(smtp_relay, sent["message_id"]) == 1
    assert await _feed(client, auth, sent["id"]) == [
        ("outbox.queued", 0),
        ("outbox.sending", 1),
        ("outbox.failed", 1),
        ("outbox.queued", 1),  # failed -> queued by the retry
        ("outbox.sending", 2),
        ("outbox.sent", 2),
    ]
    # Sent now: another retry is refused.
    again = await _retry(client, auth, sent["id"])
    assert again.status_code == 409, again.text


async def test_a_retry_after_a_last_attempt_whose_reply_was_lost_looks_in_sent_first(
    app: FastAPI,
    client: httpx.AsyncClient,
    auth: Headers,
    target: SyncTarget,
    recipient: SyncTarget,
    dovecot: DovecotServer,
    smtp_relay: SmtpRelay,
) -> None:
    scheduled = await _send(client, auth, _body(target, recipient, send_at=_later()))
    entry_id = uuid.UUID(scheduled["id"])
    state: Runtime = app.state.mailsvc
    async with state.sessionmaker.begin() as session:
        # Its only attempt, due now.
        await session.execute(
            update(OutboxMessage)
            .where(OutboxMessage.id == entry_id)
            .values(max_attempts=1, next_attempt_at=datetime.now(UTC) - timedelta(seconds=1))
        )
    # The relay takes the message, and the connection drops before its reply.
    smtp_relay.drop_after_data(deliver=True)
    assert await state.outbox.sender.attempt(target.tenant_id, entry_id) == "failed"
    assert _delivered(smtp_relay, scheduled["message_id"]) == 1

    # A provider that files sent mail itself has the copy in Sent.
    async with state.sessionmaker() as session:
        raw = await session.scalar(
            select(OutboxMessage.raw_mime).where(OutboxMessage.id == entry_id)
        )
    assert raw is not None
    await asyncio.to_thread(imap_client.append, dovecot, target.user, "Sent", [raw])

    response = await _retry(client, auth, scheduled["id"])
    assert response.status_code == 202, response.text
    await state.outbox.wait_idle()
    entry = await _entry(client, auth, scheduled["id"])
    # The second attempt found it in Sent and sent nothing.
    assert (entry["status"], entry["attempts"]) == ("sent", 2)
    assert _delivered(smtp_relay, scheduled["message_id"]) == 1  # not sent a second time


@pytest.mark.parametrize("status", ["sending", "sent", "bounced", "cancelled"])
async def test_an_entry_neither_queued_nor_failed_is_not_retried(
    app: FastAPI,
    client: httpx.AsyncClient,
    auth: Headers,
    target: SyncTarget,
    recipient: SyncTarget,
    smtp_relay: SmtpRelay,
    status: str,
) -> None:
    scheduled = await _send(client, auth, _body(target, recipient, send_at=_later()))
    entry_id = uuid.UUID(scheduled["id"])
    state: Runtime = app.state.mailsvc
    async with state.sessionmaker.begin() as session:
        await session.execute(
            update(OutboxMessage).where(OutboxMessage.id == entry_id).values(status=status)
        )
    before = await _entry(client, auth, scheduled["id"])

    response = await _retry(client, auth, scheduled["id"])
    assert response.status_code == 409, response.text
    problem = response.json()
    assert problem["code"] == "outbox_not_retryable"
    assert status in problem["detail"]
    await state.outbox.wait_idle()
    assert await _entry(client, auth, scheduled["id"]) == before
    assert await _feed(client, auth, scheduled["id"]) == [("outbox.queued", 0)]
    assert _delivered(smtp_relay, scheduled["message_id"]) == 0


async def test_another_tenants_entry_is_not_found_and_reading_is_not_enough(
    app: FastAPI,
    client: httpx.AsyncClient,
    auth: Headers,
    make_token: TokenFactory,
    target: SyncTarget,
    recipient: SyncTarget,
    smtp_relay: SmtpRelay,
) -> None:
    scheduled = await _send(client, auth, _body(target, recipient, send_at=_later()))
    other_tenant = {"Authorization": f"Bearer {make_token(f't-other-{uuid.uuid4().hex[:8]}')}"}
    response = await _retry(client, other_tenant, scheduled["id"])
    assert response.status_code == 404, response.text
    assert response.json()["code"] == "outbox_not_found"
    missing = await _retry(client, auth, str(uuid.uuid4()))
    assert missing.status_code == 404
    assert missing.json()["code"] == "outbox_not_found"

    reader = {"Authorization": f"Bearer {make_token(target.tenant_id, scopes=['mail:read'])}"}
    refused = await _retry(client, reader, scheduled["id"])
    assert refused.status_code == 403, refused.text
    assert refused.json()["code"] == "insufficient_scope"

    state: Runtime = app.state.mailsvc
    await state.outbox.wait_idle()
    entry = await _entry(client, auth, scheduled["id"])
    assert (entry["status"], entry["next_attempt_at"]) == ("queued", scheduled["next_attempt_at"])
    assert _delivered(smtp_relay, scheduled["message_id"]) == 0
