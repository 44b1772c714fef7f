"""`/api/webhooks`: registering, reading, changing and deleting webhooks, the signing
secret shown once, the URL rules, the test ping, and tenancy."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from mailsvc.app import create_app
from mailsvc.config import Settings
from tests.fixtures.app import TokenFactory
from tests.webhook.conftest import CreateWebhook
from tests.webhook.receiver import Receiver, signature_is_valid

Headers = dict[str, str]


async def test_a_webhook_is_created_read_listed_changed_and_deleted(
    client: httpx.AsyncClient, auth: Headers, create_webhook: CreateWebhook, receiver: Receiver
) -> None:
    created = await create_webhook(
        auth,
        receiver.url,
        event_types=["message.deleted", "message.created", "message.created"],
        description="CRM sync",
    )
    assert created["secret"].startswith("whsec_")
    assert created["event_types"] == ["message.created", "message.deleted"]
    assert (created["active"], created["failure_count"], created["disabled_reason"]) == (
        True,
        0,
        None,
    )
    path = f"/api/webhooks/{created['id']}"

    read = await client.get(path, headers=auth)
    assert read.status_code == 200
    assert "secret" not in read.json()
    assert read.json()["url"] == receiver.url
    listed = await client.get("/api/webhooks", headers=auth)
    assert [item["id"] for item in listed.json()["items"]] == [created["id"]]
    assert created["secret"] not in listed.text

    updated = await client.put(
        path, json={"url": receiver.url + "?v=2", "active": False}, headers=auth
    )
    assert updated.status_code == 200, updated.text
    assert (updated.json()["url"], updated.json()["active"]) == (receiver.url + "?v=2", False)
    assert updated.json()["event_types"] == []  # PUT replaces

    assert (await client.delete(path, headers=auth)).status_code == 204
    gone = await client.get(path, headers=auth)
    assert (gone.status_code, gone.json()["code"]) == (404, "webhook_not_found")


async def test_webhooks_are_listed_page_by_page(
    client: httpx.AsyncClient, auth: Headers, create_webhook: CreateWebhook, receiver: Receiver
) -> None:
    ids = [(await create_webhook(auth, f"{receiver.url}?n={n}"))["id"] for n in range(3)]
    seen: list[str] = []
    cursor: str | None = None
    while True:
        params: dict[str, Any] = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = (await client.get("/api/webhooks", params=params, headers=auth)).json()
        seen += [item["id"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == ids
    bad = await client.get("/api/webhooks", params={"cursor": "nope"}, headers=auth)
    assert (bad.status_code, bad.json()["code"]) == (400, "invalid_cursor")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"event_types": ["message.created", "message.exploded"]}, "body.event_types"),
        ({"url": "ftp://example.com/hook"}, "body.url"),
        ({"url": "https://user:pw@example.com/hook"}, "body.url"),
        ({"url": "/relative"}, "body.url"),
        ({"secret": "mine"}, "body.secret"),
    ],
)
async def test_invalid_fields_are_422_naming_the_field(
    client: httpx.AsyncClient, auth: Headers, body: dict[str, Any], field: str
) -> None:
    response = await client.post(
        "/api/webhooks", json={"url": "https://example.com/hook", **body}, headers=auth
    )
    assert response.status_code == 422, response.text
    fields = [error["field"] for error in response.json()["errors"]]
    assert any(name.startswith(field) for name in fields), fields


@pytest.fixture
async def public_only_client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """An app with ALLOW_PRIVATE_HOSTS off (the run's app allows loopback peers)."""
    app: FastAPI = create_app(settings.model_copy(update={"allow_private_hosts": False}))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://mailsvc.test") as http:
            yield http


@pytest.mark.parametrize(
    "url",
    [
        "https://127.0.0.1/hooks",
        "https://localhost:8443/hooks",
        "https://10.1.2.3/hooks",
        "https://169.254.169.254/latest/meta-data",
        "https://[::1]/hooks",
        "http://93.184.215.14/hooks",  # public, but not https
    ],
)
async def test_private_addresses_and_plain_http_are_refused(
    public_only_client: httpx.AsyncClient, auth: Headers, url: str
) -> None:
    response = await public_only_client.post("/api/webhooks", json={"url": url}, headers=auth)
    assert response.status_code == 422, response.text
    problem = response.json()
    assert problem["code"] == "webhook_url_not_allowed"
    assert [error["field"] for error in problem["errors"]] == ["body.url"]


async def test_an_update_to_a_private_address_is_refused(
    public_only_client: httpx.AsyncClient,
    client: httpx.AsyncClient,
    auth: Headers,
    create_webhook: CreateWebhook,
    receiver: Receiver,
) -> None:
    created = await create_webhook(auth, receiver.url)
    response = await public_only_client.put(
        f"/api/webhooks/{created['id']}", json={"url": "https://127.0.0.1/x"}, headers=auth
    )
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "body.url"
    # The URL is checked again when it is used: the stored plain-http loopback URL
    # (saved while private hosts were allowed) is not called.
    tested = await public_only_client.post(f"/api/webhooks/{created['id']}/test", headers=auth)
    assert tested.status_code == 200
    assert (tested.json()["delivered"], tested.json()["error"]) == (
        False,
        "the URL must use https",
    )
    assert tested.json()["duration_ms"] is None  # no request was made
    assert receiver.requests == []


async def test_the_test_ping_is_signed_and_reports_the_answer(
    client: httpx.AsyncClient, auth: Headers, create_webhook: CreateWebhook, receiver: Receiver
) -> None:
    created = await create_webhook(auth, receiver.url)
    path = f"/api/webhooks/{created['id']}/test"
    answer = (await client.post(path, headers=auth)).json()
    assert (answer["delivered"], answer["status_code"], answer["error"]) == (True, 200, None)
    (request,) = receiver.requests
    assert request.path == "/hooks/mailsvc"
    assert request.headers["webhook-id"] == answer["delivery_id"]
    assert request.headers["content-type"] == "application/json"
    assert request.headers["user-agent"] == "mailsvc-webhooks"
    assert request.headers["mailsvc-event-type"] == "webhook.test"
    assert request.event["type"] == "webhook.test"
    assert request.event["data"] == {"webhook_id": created["id"]}
    assert signature_is_valid(created["secret"], request)

    receiver.status = 503
    failed = (await client.post(path, headers=auth)).json()
    assert (failed["delivered"], failed["status_code"]) == (False, 503)
    assert failed["error"] == "HTTP 503: try again later"
    await receiver.stop()
    down = (await client.post(path, headers=auth)).json()
    assert (down["delivered"], down["status_code"]) == (False, None)
    assert down["error"].startswith("request failed")


async def test_the_test_ping_reports_how_long_the_receiver_took(
    client: httpx.AsyncClient, auth: Headers, create_webhook: CreateWebhook, receiver: Receiver
) -> None:
    created = await create_webhook(auth, receiver.url)
    path = f"/api/webhooks/{created['id']}/test"
    receiver.delay = 0.3
    slow = (await client.post(path, headers=auth)).json()
    assert (slow["delivered"], slow["status_code"]) == (True, 200)
    assert 300 <= slow["duration_ms"] < 3000, slow
    receiver.delay = 0
    fast = (await client.post(path, headers=auth)).json()
    assert 0 <= fast["duration_ms"] < 300, fast
    await receiver.stop()
    down = (await client.post(path, headers=auth)).json()
    # A refused connection is a failure too: the time until it failed.
    assert down["error"].startswith("request failed")
    assert 0 <= down["duration_ms"] < 300, down


async def test_another_tenant_gets_404_on_every_webhook_route(
    client: httpx.AsyncClient,
    auth: Headers,
    make_token: TokenFactory,
    create_webhook: CreateWebhook,
    receiver: Receiver,
) -> None:
    created = await create_webhook(auth, receiver.url)
    intruder = {"Authorization": f"Bearer {make_token('intruder-' + uuid.uuid4().hex[:6])}"}
    path = f"/api/webhooks/{created['id']}"
    attempts = [
        await client.get(path, headers=intruder),
        await client.put(path, json={"url": receiver.url}, headers=intruder),
        await client.delete(path, headers=intruder),
        await client.post(f"{path}/test", headers=intruder),
        await client.get(f"{path}/deliveries", headers=intruder),
    ]
    assert [(r.status_code, r.json()["code"]) for r in attempts] == [(404, "webhook_not_found")] * 5
    assert (await client.get("/api/webhooks", headers=intruder)).json()["items"] == []
    assert receiver.requests == []
    # ...and the owner still has it, untouched.
    assert (await client.get(path, headers=auth)).json()["url"] == receiver.url


async def test_the_webhook_scope_is_required(
    client: httpx.AsyncClient, make_token: TokenFactory, tenant_id: str
) -> None:
    reader = {"Authorization": f"Bearer {make_token(tenant_id, scopes=['mail:read'])}"}
    response = await client.get("/api/webhooks", headers=reader)
    assert (response.status_code, response.json()["code"]) == (403, "insufficient_scope")
