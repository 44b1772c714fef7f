"""Delivering events to a receiver through the fan-out task and arq delivery jobs:
every event, in order per account, signed, through outages, never across tenants."""

from __future__ import annotations

import uuid
from collections import Counter

import httpx
from fastapi import FastAPI

from mailsvc.config import Settings
from mailsvc.event.repository import FeedPosition
from mailsvc.event.schemas import encode_position
from mailsvc.sync.engine import SyncEngine
from tests.fixtures.app import TokenFactory
from tests.fixtures.dovecot import DovecotServer
from tests.fixtures.smtp_server import SmtpRelay
from tests.fixtures.waiting import eventually
from tests.webhook.conftest import (
    CreateWebhook,
    by_account,
    tenant_changes,
    webhook_worker,
)
from tests.webhook.helpers import append, deliveries, mail_account
from tests.webhook.receiver import Receiver, signature_is_valid

Headers = dict[str, str]


async def _event_ids(app: FastAPI, tenant_id: str) -> set[str]:
    return {
        encode_position(FeedPosition(change.txid, change.id))
        for change in await tenant_changes(app, tenant_id)
    }


async def test_a_receiver_down_for_a_while_gets_every_event_once_in_order_signed(
    app: FastAPI,
    client: httpx.AsyncClient,
    auth: Headers,
    tenant_id: str,
    engine: SyncEngine,
    dovecot: DovecotServer,
    smtp_relay: SmtpRelay,
    receiver: Receiver,
    create_webhook: CreateWebhook,
    webhook_settings: Settings,
) -> None:
    webhook = await create_webhook(auth, receiver.url)
    receiver.status = 503
    first, first_user = await mail_account(client, auth, dovecot, smtp_relay, messages=4)
    second, _ = await mail_account(client, auth, dovecot, smtp_relay, messages=3)
    async with webhook_worker(app, webhook_settings):
        await engine.sync_account(tenant_id, first)

        async def refused_and_retried() -> bool:
            return Counter(r.delivery_id for r in receiver.requests).most_common(1)[0][1] >= 3

        await eventually(refused_and_retried, within=30, what="503s retried")
        await receiver.stop()

        async def attempts_failing_to_connect() -> bool:
            found = await deliveries(client, auth, webhook["id"])
            return any((d["last_error"] or "").startswith("request failed") for d in found)

        await eventually(attempts_failing_to_connect, within=30, what="connections refused")
        # Events keep coming while the receiver is away.
        await engine.sync_account(tenant_id, second)
        await append(dovecot, first_user, range(10, 13))
        await engine.sync_account(tenant_id, first)
        receiver.status = 200
        await receiver.start()
        expected = await _event_ids(app, tenant_id)

        async def all_delivered() -> bool:
            found = await deliveries(client, auth, webhook["id"])
            return len(found) == len(expected) and {d["status"] for d in found} == {"succeeded"}

        await eventually(all_delivered, within=60, what="every event delivered")

    accepted = receiver.accepted()
    # Exactly once per delivery id, and every event.
    assert len(accepted) == len({r.delivery_id for r in accepted}) == len(expected)
    assert {r.event["id"] for r in accepted} == expected
    # In order per account, with nothing skipped.
    for account_id, seqs in by_account([r.event for r in accepted]).items():
        assert seqs == sorted(seqs), account_id
    assert set(by_account([r.event for r in accepted])) == {first, second}
    # Retries reuse the delivery id and the body; every request is signed.
    bodies: dict[str, bytes] = {}
    for request in receiver.requests:
        assert bodies.setdefault(request.delivery_id, request.body) == request.body
        assert request.headers["mailsvc-event-type"] == request.event["type"]
        assert signature_is_valid(webhook["secret"], request)
    assert max(Counter(r.delivery_id for r in receiver.requests).values()) >= 3
    types = Counter(r.event["type"] for r in accepted)
    assert types["message.created"] == 10
    assert types["account.created"] == 2


async def test_a_tenant_receives_only_its_own_events(
    app: FastAPI,
    client: httpx.AsyncClient,
    auth: Headers,
    tenant_id: str,
    make_token: TokenFactory,
    engine: SyncEngine,
    dovecot: DovecotServer,
    smtp_relay: SmtpRelay,
    receiver: Receiver,
    create_webhook: CreateWebhook,
    webhook_settings: Settings,
) -> None:
    other_tenant = f"t-other-{uuid.uuid4().hex[:8]}"
    other_auth = {"Authorization": f"Bearer {make_token(other_tenant)}"}
    other_receiver = Receiver()
    await other_receiver.start()
    try:
        mine = await create_webhook(auth, receiver.url)
        theirs = await create_webhook(
            other_auth, other_receiver.url, event_types=["message.created"]
        )
        my_account, _ = await mail_account(client, auth, dovecot, smtp_relay, messages=2)
        their_account, _ = await mail_account(client, other_auth, dovecot, smtp_relay, messages=3)
        mine_expected = await _event_ids(app, tenant_id)  # before the syncs: account.created
        async with webhook_worker(app, webhook_settings):
            await engine.sync_account(tenant_id, my_account)
            await engine.sync_account(other_tenant, their_account)
            mine_expected = await _event_ids(app, tenant_id)

            async def both_done() -> bool:
                return (
                    len(receiver.accepted()) == len(mine_expected)
                    and len(other_receiver.accepted()) == 3
                )

            await eventually(both_done, within=60, what="both tenants' events delivered")
        assert {r.event["id"] for r in receiver.accepted()} == mine_expected
        assert {r.event["account_id"] for r in receiver.accepted()} == {str(my_account)}
        theirs_received = [r.event for r in other_receiver.accepted()]
        assert {event["account_id"] for event in theirs_received} == {str(their_account)}
        assert {event["type"] for event in theirs_received} == {"message.created"}
        assert all(signature_is_valid(mine["secret"], r) for r in receiver.requests)
        assert all(signature_is_valid(theirs["secret"], r) for r in other_receiver.requests)
        assert not any(signature_is_valid(theirs["secret"], r) for r in receiver.requests)
    finally:
        await other_receiver.stop()


async def test_a_webhook_that_keeps_failing_is_disabled_and_can_be_resumed(
    app: FastAPI,
    client: httpx.AsyncClient,
    auth: Headers,
    tenant_id: str,
    engine: SyncEngine,
    dovecot: DovecotServer,
    smtp_relay: SmtpRelay,
    receiver: Receiver,
    create_webhook: CreateWebhook,
    webhook_settings: Settings,
) -> None:
    settings = webhook_settings.model_copy(
        update={"webhook_max_attempts": 2, "webhook_disable_after_failures": 2}
    )
    webhook = await create_webhook(auth, receiver.url)
    path = f"/api/webhooks/{webhook['id']}"
    receiver.status = 500
    account_id, _ = await mail_account(client, auth, dovecot, smtp_relay, messages=3)
    async with webhook_worker(app, settings):
        await engine.sync_account(tenant_id, account_id)

        async def disabled() -> bool:
            return (await client.get(path, headers=auth)).json()["active"] is False

        await eventually(disabled, within=30, what="webhook disabled")
        current = (await client.get(path, headers=auth)).json()
        assert current["failure_count"] == 2
        assert current["disabled_reason"].startswith(
            "disabled after 2 deliveries in a row failed 2 attempts each; last error: HTTP 500"
        )
        found = await deliveries(client, auth, webhook["id"])
        failed = [d for d in found if d["status"] == "failed"]
        assert [(d["attempts"], d["last_status_code"]) for d in failed] == [(2, 500)] * 2
        # The account's first two events were given up; the others wait.
        expected = await _event_ids(app, tenant_id)
        assert {d["status"] for d in found if d not in failed} == {"pending"}
        assert len(found) == len(expected)
        assert len(receiver.requests) == 4

        receiver.status = 200
        resumed = await client.put(path, json={"url": receiver.url, "active": True}, headers=auth)
        assert resumed.status_code == 200
        assert (resumed.json()["failure_count"], resumed.json()["disabled_reason"]) == (0, None)

        async def rest_delivered() -> bool:
            return len(receiver.accepted()) == len(expected) - 2

        await eventually(rest_delivered, within=30, what="the waiting events delivered")
    given_up = {d["event_id"] for d in failed}
    delivered = [r.event for r in receiver.accepted()]
    assert {event["id"] for event in delivered} == expected - given_up
    assert by_account(delivered)[account_id] == sorted(by_account(delivered)[account_id])
