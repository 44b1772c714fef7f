"""Message requests are exactly as strict as their schema: flags and compose options
are JSON booleans, and `before`/`after` are RFC 3339 date-times, not Unix timestamps."""

from __future__ import annotations

import uuid

import httpx
import pytest

Headers = dict[str, str]


def _fields(response: httpx.Response) -> list[str]:
    assert response.status_code == 422, response.text
    return [error["field"] for error in response.json()["errors"]]


@pytest.mark.parametrize("value", [1, 0, "true", "false"])
async def test_flags_are_json_booleans(
    client: httpx.AsyncClient, auth: Headers, value: object
) -> None:
    flags = {"seen": value, "flagged": value, "answered": value}
    single = await client.patch(f"/api/messages/{uuid.uuid4()}", json=flags, headers=auth)
    assert _fields(single) == ["body.seen", "body.flagged", "body.answered"]
    bulk = await client.post(
        "/api/messages/bulk/flags", json={"ids": [str(uuid.uuid4())], "flags": flags}, headers=auth
    )
    assert _fields(bulk) == ["body.flags.seen", "body.flags.flagged", "body.flags.answered"]


@pytest.mark.parametrize("value", [1, "true"])
async def test_compose_options_are_json_booleans(
    client: httpx.AsyncClient, auth: Headers, value: object
) -> None:
    # A send and a draft share these fields (outbox.schemas.MessageFields).
    body = {"account_id": str(uuid.uuid4()), "quote_original": value, "forward_inline": value}
    for path in ("/api/send", "/api/compose"):
        response = await client.post(path, json=body, headers=auth)
        assert _fields(response) == ["body.quote_original", "body.forward_inline"]


@pytest.mark.parametrize("path", ["/api/messages", "/api/threads"])
@pytest.mark.parametrize("value", ["0.5", "1700000000", "-1", "2024-01-01"])
async def test_time_filters_are_rfc3339_date_times(
    client: httpx.AsyncClient, auth: Headers, path: str, value: str
) -> None:
    response = await client.get(path, params={"after": value, "before": value}, headers=auth)
    assert _fields(response) == ["query.after", "query.before"]


@pytest.mark.parametrize("path", ["/api/messages", "/api/threads"])
async def test_time_filters_take_rfc3339_date_times(
    client: httpx.AsyncClient, auth: Headers, path: str
) -> None:
    params = {"after": "2024-01-01T00:00:00Z", "before": "2024-02-01T12:30:00.5+01:00"}
    response = await client.get(path, params=params, headers=auth)
    assert response.status_code == 200, response.text
    assert response.json()["items"] == []
