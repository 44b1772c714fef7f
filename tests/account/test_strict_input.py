"""Account bodies are exactly as strict as their schema: JSON booleans only, and
host names without a trailing newline."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

Headers = dict[str, str]


def _body(**overrides: Any) -> dict[str, Any]:
    server = {
        "host": "imap.example.com",
        "port": 993,
        "security": "tls",
        "username": "ada@example.com",
        "password": "app-password",
    }
    return {"email": "ada@example.com", "imap": server, "smtp": dict(server)} | overrides


def _fields(response: httpx.Response) -> list[str]:
    assert response.status_code == 422, response.text
    return [error["field"] for error in response.json()["errors"]]


@pytest.mark.parametrize("value", [1, 0, "true", "false"])
async def test_boolean_options_take_json_booleans_only(
    client: httpx.AsyncClient, auth: Headers, value: object
) -> None:
    body = _body(sync_options={"events_for_existing": value}, send_options={"save_drafts": value})
    response = await client.post("/api/accounts", json=body, headers=auth)
    assert _fields(response) == [
        "body.sync_options.events_for_existing",
        "body.send_options.save_drafts",
    ]


@pytest.mark.parametrize("host", ["abc\n", "10.0.0.1\n", "::1\n", ".0.1", "10..1"])
async def test_a_host_with_a_trailing_newline_is_refused(
    client: httpx.AsyncClient, auth: Headers, host: str
) -> None:
    server = _body()["imap"] | {"host": host}
    response = await client.post("/api/accounts", json=_body(imap=server), headers=auth)
    assert _fields(response) == ["body.imap.host"]


@pytest.mark.parametrize("value", [True, False, "993", 9.5])
async def test_integers_are_json_integers(
    client: httpx.AsyncClient, auth: Headers, value: object
) -> None:
    server = _body()["imap"] | {"port": value}
    body = _body(imap=server, sync_options={"max_messages_per_mailbox": value})
    response = await client.post("/api/accounts", json=body, headers=auth)
    assert _fields(response) == ["body.imap.port", "body.sync_options.max_messages_per_mailbox"]


@pytest.mark.parametrize("since", [0, 1.5, "1700000000", "2024-01-01T00:00:00Z"])
async def test_since_is_an_rfc3339_full_date(
    client: httpx.AsyncClient, auth: Headers, since: object
) -> None:
    body = _body(sync_options={"since": since})
    response = await client.post("/api/accounts", json=body, headers=auth)
    assert _fields(response) == ["body.sync_options.since"]
