"""Webhook bodies take JSON booleans only: `active` is `true` or `false`, never 1
or "true" (the schema says boolean)."""

from __future__ import annotations

import uuid

import httpx
import pytest

Headers = dict[str, str]


@pytest.mark.parametrize("active", [1, 0, "true", "false"])
async def test_active_is_a_json_boolean_on_create_and_update(
    client: httpx.AsyncClient, auth: Headers, active: object
) -> None:
    body = {"url": "https://hooks.example.com/mailsvc", "active": active}
    created = await client.post("/api/webhooks", json=body, headers=auth)
    updated = await client.put(f"/api/webhooks/{uuid.uuid4()}", json=body, headers=auth)
    for response in (created, updated):
        assert response.status_code == 422, response.text
        assert [error["field"] for error in response.json()["errors"]] == ["body.active"]


@pytest.mark.parametrize(
    "url",
    ["https://hooks.example.com/{x}", "https://hooks.example.com/a|b", "https://h.example/%zz"],
)
async def test_a_url_is_a_uri(client: httpx.AsyncClient, auth: Headers, url: str) -> None:
    # The schema says `format: uri`: characters RFC 3986 does not allow are refused.
    response = await client.post("/api/webhooks", json={"url": url}, headers=auth)
    assert response.status_code == 422, response.text
    assert [error["field"] for error in response.json()["errors"]] == ["body.url"]
