"""How long each delivery attempt took (`last_duration_ms`), recorded by the delivery
jobs against the test receiver: an answer after a pause, and a timeout."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
from fastapi import FastAPI

from mailsvc.config import Settings
from tests.fixtures.dovecot import DovecotServer
from tests.fixtures.smtp_server import SmtpRelay
from tests.fixtures.waiting import eventually
from tests.webhook.conftest import CreateWebhook, webhook_worker
from tests.webhook.helpers import deliveries, mail_account
from tests.webhook.receiver import Receiver

Headers = dict[str, str]


async def test_each_attempt_records_its_round_trip_until_the_answer_or_the_timeout(
    app: FastAPI,
    client: httpx.AsyncClient,
    auth: Headers,
    dovecot: DovecotServer,
    smtp_relay: SmtpRelay,
    receiver: Receiver,
    create_webhook: CreateWebhook,
    webhook_settings: Settings,
) -> None:
    settings = webhook_settings.model_copy(update={"webhook_timeout_seconds": 1.0})
    webhook = await create_webhook(auth, receiver.url, event_types=["account.created"])
    receiver.delay = 1.5  # past the timeout: no answer
    seen: dict[str, Any] = {}

    async def delivery_where(condition: Callable[[dict[str, Any]], bool]) -> bool:
        (delivery,) = await deliveries(client, auth, webhook["id"]) or [{}]
        seen.update(delivery)
        return bool(delivery) and condition(delivery)

    async with webhook_worker(app, settings):
        await mail_account(client, auth, dovecot, smtp_relay, messages=0)
        await eventually(
            lambda: delivery_where(lambda d: (d["last_error"] or "").startswith("no answer")),
            within=30,
            what="an attempt timed out",
        )
        assert seen["status"] in {"pending", "delivering"}
        assert seen["last_status_code"] is None
        assert 1000 <= seen["last_duration_ms"] < 2000, seen

        receiver.delay = 0.3
        await eventually(
            lambda: delivery_where(lambda d: d["status"] == "succeeded"),
            within=30,
            what="the delivery succeeded",
        )
    assert seen["last_status_code"] == 200
    assert 300 <= seen["last_duration_ms"] < 1000, seen
