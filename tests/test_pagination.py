"""Every keyset-paged list refuses a cursor it did not hand out the same way."""

from __future__ import annotations

import base64
import json

import httpx
import pytest

FOREIGN = base64.urlsafe_b64encode(json.dumps({"after": 5, "t": [], "i": None}).encode()).decode()


@pytest.mark.parametrize(
    "path", ["/api/accounts", "/api/messages", "/api/threads", "/api/outbox", "/api/drafts",
             "/api/webhooks"],
)  # fmt: skip
@pytest.mark.parametrize("cursor", ["not-a-cursor", FOREIGN, "W10"])  # "W10" is `[]`
async def test_a_cursor_this_service_did_not_hand_out_is_a_400(
    client: httpx.AsyncClient, auth: dict[str, str], path: str, cursor: str
) -> None:
    response = await client.get(path, params={"cursor": cursor}, headers=auth)
    assert response.status_code == 400, response.text
    assert response.json()["code"] == "invalid_cursor"
