"""The fan-out: delivery rows per webhook and change, once, in each account's order,
from where the webhook was created."""

from __future__ import annotations

import uuid

import httpx
from arq.connections import ArqRedis
from fastapi import FastAPI
from sqlalchemy import text

from mailsvc.config import Settings
from mailsvc.event.listener import ChangeListener
from mailsvc.event.repository import ChangeRepository
from mailsvc.runtime import Runtime
from mailsvc.sync.engine import SyncEngine
from mailsvc.webhook.fanout import WebhookFanout
from tests.fixtures.dovecot import DovecotServer
from tests.fixtures.smtp_server import SmtpRelay
from tests.fixtures.waiting import eventually
from tests.webhook.conftest import CreateWebhook, tenant_changes, webhook_worker
from tests.webhook.helpers import deliveries, mail_account
from tests.webhook.receiver import Receiver

Headers = dict[str, str]


def _fanout(app: FastAPI) -> WebhookFanout:
    state: Runtime = app.state.mailsvc
    return WebhookFanout(
        sessionmaker=state.sessionmaker,
        arq=ArqRedis(connection_pool=state.redis.connection_pool),
        listener=ChangeListener("postgresql://not-started"),
    )


def _sync_completed(account_id: uuid.UUID) -> dict[str, object]:
    return {"account_id": str(account_id), "new_messages": 0, "updated": 0, "deleted": 0}


async def test_changes_held_back_by_an_older_transaction_go_out_once_it_ends_in_order(
    app: FastAPI,
    client: httpx.AsyncClient,
    auth: Headers,
    tenant_id: str,
    dovecot: DovecotServer,
    smtp_relay: SmtpRelay,
    receiver: Receiver,
    create_webhook: CreateWebhook,
    webhook_settings: Settings,
) -> None:
    webhook = await create_webhook(auth, receiver.url)
    webhook_id = uuid.UUID(webhook["id"])
    account_id, _ = await mail_account(client, auth, dovecot, smtp_relay, messages=0)
    state: Runtime = app.state.mailsvc
    # Transaction ids are taken in this order: `later`, `blocker`, `earlier`. `earlier`
    # appends first (seq N), `later` second (seq N+1) with the smaller id, and
    # `blocker` stays open: the feed holds both back (N+1 sorts after N, whatever its
    # transaction id) until `blocker` ends.
    async with (
        state.sessionmaker() as later,
        state.sessionmaker() as blocker,
        state.sessionmaker() as earlier,
    ):
        for session in (later, blocker, earlier):
            await session.execute(text("SELECT pg_current_xact_id()"))
        await ChangeRepository(earlier, tenant_id).append(
            account_id, "sync.completed", _sync_completed(account_id)
        )
        await earlier.commit()
        await ChangeRepository(later, tenant_id).append(
            account_id, "sync.completed", _sync_completed(account_id)
        )
        await later.commit()

        assert await _fanout(app).fan_out_webhook(tenant_id, webhook_id) == "blocked"
        seqs = sorted(change.seq for change in await tenant_changes(app, tenant_id))
        found = await deliveries(client, auth, webhook["id"])
        assert sorted(d["seq"] for d in found) == seqs[:-2]  # N and N+1 wait
        await blocker.rollback()

    # Once the feed reaches N, nothing is created twice.
    assert await _fanout(app).fan_out_webhook(tenant_id, webhook_id) == "done"
    assert len(await deliveries(client, auth, webhook["id"])) == len(seqs)
    async with webhook_worker(app, webhook_settings):

        async def delivered() -> bool:
            return len(receiver.accepted()) == len(seqs)

        await eventually(delivered, within=30, what="deliveries")
    assert [r.event["seq"] for r in receiver.accepted()] == seqs


async def test_a_new_webhook_starts_at_the_end_of_the_feed(
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
    account_id, _ = await mail_account(client, auth, dovecot, smtp_relay, messages=2)
    before = {change.id for change in await tenant_changes(app, tenant_id)}
    webhook = await create_webhook(auth, receiver.url, event_types=["message.created"])
    async with webhook_worker(app, webhook_settings):
        await engine.sync_account(tenant_id, account_id)

        async def delivered() -> bool:
            return len(receiver.accepted()) == 2

        await eventually(delivered, within=30, what="the new messages delivered")
    assert {r.event["type"] for r in receiver.accepted()} == {"message.created"}
    found = await deliveries(client, auth, webhook["id"])
    assert len(found) == 2
    assert not {d["change_id"] for d in found} & before
