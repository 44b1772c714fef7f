import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select

from mailsvc.account.credentials import open_password
from mailsvc.app import create_app
from mailsvc.config import Settings
from mailsvc.models import Account, Change
from mailsvc.runtime import Runtime
from tests.fixtures.app import TokenFactory, account_body, remember_secret
from tests.fixtures.dovecot import DovecotServer, TestMailUser
from tests.fixtures.smtp_server import SmtpRelay


@pytest.fixture
def body(dovecot: DovecotServer, smtp_relay: SmtpRelay, mail_user: TestMailUser) -> dict[str, Any]:
    return account_body(dovecot, smtp_relay, mail_user)


async def _create(
    client: httpx.AsyncClient, auth: dict[str, str], body: dict[str, Any], **params: str
) -> httpx.Response:
    return await client.post("/api/accounts", json=body, headers=auth, params=params)


async def test_account_is_verified_against_dovecot_and_stored_encrypted(
    app: FastAPI, client: httpx.AsyncClient, auth: dict[str, str], body: dict[str, Any]
) -> None:
    response = await _create(client, auth, body)
    assert response.status_code == 201, response.text
    created = response.json()
    assert response.headers["location"] == f"/api/accounts/{created['id']}"
    assert created["email"] == body["email"]
    assert created["state"] == "connecting"
    assert created["imap"] == {k: v for k, v in body["imap"].items() if k != "password"}
    assert body["imap"]["password"] not in response.text

    state: Runtime = app.state.mailsvc
    async with state.sessionmaker() as session:
        account = await session.get(Account, uuid.UUID(created["id"]))
        assert account is not None
        assert account.imap_secret.startswith("v1.")
        assert body["imap"]["password"] not in account.imap_secret
        assert open_password(state.secrets, account, "imap") == body["imap"]["password"]
        changes = (await session.scalars(select(Change.type).where(
            Change.account_id == account.id))).all()  # fmt: skip
        assert changes == ["account.created"]


async def test_starttls_on_both_servers_verifies(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    body: dict[str, Any],
    dovecot: DovecotServer,
    smtp_relay: SmtpRelay,
) -> None:
    body["imap"].update(port=dovecot.imap_port, security="starttls")
    body["smtp"].update(port=smtp_relay.port, security="starttls")
    response = await _create(client, auth, body)
    assert response.status_code == 201, response.text


async def test_wrong_imap_password_is_422_naming_imap(
    client: httpx.AsyncClient, auth: dict[str, str], body: dict[str, Any]
) -> None:
    body["imap"]["password"] = remember_secret("wrong-imap-password-x1")
    response = await _create(client, auth, body)
    assert response.status_code == 422
    problem = response.json()
    assert problem["code"] == "imap_login_failed"
    assert problem["detail"].startswith("IMAP login failed")
    assert [e["field"] for e in problem["errors"]] == ["body.imap"]
    assert "wrong-imap-password-x1" not in response.text
    listed = await client.get("/api/accounts", headers=auth)
    assert listed.json()["items"] == []


async def test_wrong_smtp_password_is_422_naming_smtp(
    client: httpx.AsyncClient, auth: dict[str, str], body: dict[str, Any]
) -> None:
    body["smtp"]["password"] = remember_secret("wrong-smtp-password-y2")
    response = await _create(client, auth, body)
    assert response.status_code == 422
    assert response.json()["code"] == "smtp_login_failed"
    assert "SMTP login failed" in response.json()["detail"]


async def test_unreachable_imap_server_is_422_connect_failed(
    client: httpx.AsyncClient, auth: dict[str, str], body: dict[str, Any]
) -> None:
    from tests.fixtures.net import free_port

    body["imap"]["port"] = free_port()
    response = await _create(client, auth, body)
    assert response.status_code == 422
    assert response.json()["code"] == "imap_connect_failed"


async def test_verify_false_skips_the_login_check(
    client: httpx.AsyncClient, auth: dict[str, str], body: dict[str, Any]
) -> None:
    body["imap"]["password"] = remember_secret("not-checked-password-z3")
    response = await _create(client, auth, body, verify="false")
    assert response.status_code == 201


@pytest.fixture
async def public_only_app(settings: Settings) -> AsyncIterator[FastAPI]:
    app = create_app(settings.model_copy(update={"allow_private_hosts": False}))
    async with app.router.lifespan_context(app):
        yield app


async def test_private_host_is_refused_without_allow_private_hosts(
    public_only_app: FastAPI, auth: dict[str, str], body: dict[str, Any]
) -> None:
    transport = httpx.ASGITransport(app=public_only_app)
    async with httpx.AsyncClient(transport=transport, base_url="http://mailsvc.test") as client:
        response = await _create(client, auth, body, verify="false")
    assert response.status_code == 422
    problem = response.json()
    assert problem["code"] == "host_not_allowed"
    assert problem["errors"][0]["field"] == "body.imap.host"


async def test_another_tenant_gets_404_on_every_account_route(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    body: dict[str, Any],
    make_token: TokenFactory,
) -> None:
    account_id = (await _create(client, auth, body, verify="false")).json()["id"]
    intruder = {"Authorization": f"Bearer {make_token('tenant-b-' + uuid.uuid4().hex[:6])}"}
    path = f"/api/accounts/{account_id}"
    assert (await client.get(path, headers=intruder)).status_code == 404
    update = {**body, "imap": {**body["imap"]}, "smtp": {**body["smtp"]}}
    put = await client.put(path, json=update, headers=intruder, params={"verify": "false"})
    assert put.status_code == 404
    assert put.json()["code"] == "account_not_found"
    assert (await client.delete(path, headers=intruder)).status_code == 404
    assert (await client.get("/api/accounts", headers=intruder)).json()["items"] == []
    # ...and the owner still has it, untouched.
    assert (await client.get(path, headers=auth)).status_code == 200


async def test_update_keeps_the_password_when_omitted_and_checks_new_ones(
    app: FastAPI, client: httpx.AsyncClient, auth: dict[str, str], body: dict[str, Any]
) -> None:
    created = (await _create(client, auth, body)).json()
    path = f"/api/accounts/{created['id']}"
    update = {**body, "display_name": "Renamed"}
    update["imap"] = {k: v for k, v in body["imap"].items() if k != "password"}
    update["smtp"] = {k: v for k, v in body["smtp"].items() if k != "password"}
    renamed = await client.put(path, json=update, headers=auth)
    assert renamed.status_code == 200, renamed.text
    assert renamed.json()["display_name"] == "Renamed"

    update["imap"] = {**update["imap"], "password": remember_secret("bad-new-password-q4")}
    refused = await client.put(path, json=update, headers=auth)
    assert refused.status_code == 422
    assert refused.json()["code"] == "imap_login_failed"

    state: Runtime = app.state.mailsvc
    async with state.sessionmaker() as session:
        account = await session.get(Account, uuid.UUID(created["id"]))
        assert account is not None
        assert open_password(state.secrets, account, "imap") == body["imap"]["password"]
        assert account.display_name == "Renamed"


async def test_delete_removes_the_account_and_records_it(
    app: FastAPI, client: httpx.AsyncClient, auth: dict[str, str], body: dict[str, Any]
) -> None:
    account_id = (await _create(client, auth, body, verify="false")).json()["id"]
    state: Runtime = app.state.mailsvc
    pubsub = state.redis.pubsub()
    await pubsub.subscribe("mailsvc:account-control")
    await pubsub.get_message(timeout=1)  # the subscribe confirmation

    deleted = await client.delete(f"/api/accounts/{account_id}", headers=auth)
    assert deleted.status_code == 204
    assert (await client.get(f"/api/accounts/{account_id}", headers=auth)).status_code == 404

    control = await pubsub.get_message(ignore_subscribe_messages=True, timeout=5)
    await pubsub.aclose()
    assert control is not None
    assert b'"action": "stop"' in control["data"]
    assert account_id.encode() in control["data"]
    async with state.sessionmaker() as session:
        types = (await session.scalars(select(Change.type).where(
            Change.account_id == uuid.UUID(account_id)).order_by(Change.seq))).all()  # fmt: skip
    assert types == ["account.created", "account.deleted"]


async def test_duplicate_email_is_409(
    client: httpx.AsyncClient, auth: dict[str, str], body: dict[str, Any]
) -> None:
    assert (await _create(client, auth, body, verify="false")).status_code == 201
    again = await _create(client, auth, body, verify="false")
    assert again.status_code == 409
    assert again.json()["code"] == "account_exists"


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda b: b["imap"].update(port=70000), "body.imap.port"),
        (lambda b: b["imap"].update(security="ssl3"), "body.imap.security"),
        (lambda b: b.update(email="not-an-address"), "body.email"),
        (lambda b: b.update(display_name="Eve\r\nBcc: x@example.com"), "body.display_name"),
        (lambda b: b["smtp"].update(host="bad host"), "body.smtp.host"),
        (lambda b: b["imap"].pop("password"), "body.imap.password"),
    ],
)
async def test_malformed_body_is_422_naming_the_field(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    body: dict[str, Any],
    mutate: Any,
    field: str,
) -> None:
    mutate(body)
    response = await _create(client, auth, body)
    assert response.status_code == 422
    problem = response.json()
    assert response.headers["content-type"] == "application/problem+json"
    assert problem["code"] == "validation_error"
    assert field in [error["field"] for error in problem["errors"]]
    assert body["smtp"]["password"] not in response.text


async def test_list_pages_with_a_cursor(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    dovecot: DovecotServer,
    smtp_relay: SmtpRelay,
) -> None:
    ids = []
    for index in range(3):
        user = TestMailUser(f"pager{index}", "pw-unused-pager", f"pager{index}@example.test")
        response = await _create(
            client, auth, account_body(dovecot, smtp_relay, user), verify="false"
        )
        ids.append(response.json()["id"])
    first = (await client.get("/api/accounts", headers=auth, params={"limit": 2})).json()
    assert [a["id"] for a in first["items"]] == ids[:2]
    second = (
        await client.get(
            "/api/accounts", headers=auth, params={"limit": 2, "cursor": first["next_cursor"]}
        )
    ).json()
    assert [a["id"] for a in second["items"]] == ids[2:]
    assert second["next_cursor"] is None
    # Not cursor-shaped: the parameter's schema refuses it, naming the field.
    malformed = await client.get("/api/accounts", headers=auth, params={"cursor": "garbage!"})
    assert malformed.status_code == 422
    assert malformed.json()["errors"][0]["field"] == "query.cursor"
    # Cursor-shaped, but not one the server issued.
    bad = await client.get("/api/accounts", headers=auth, params={"cursor": "Z2FyYmFnZQ"})
    assert bad.status_code == 400
    assert bad.json()["code"] == "invalid_cursor"
