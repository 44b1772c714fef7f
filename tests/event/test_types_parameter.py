"""`types` on the feed is exactly as strict as its schema: the schema lists the event
types (alone or joined by commas), and anything else is a 422 naming `query.types`."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from mailsvc.event.schemas import EVENT_TYPES

Headers = dict[str, str]


def _types_items(app: FastAPI, path: str) -> dict[str, Any]:
    parameters = app.openapi()["paths"][path]["get"]["parameters"]
    (schema,) = (p["schema"] for p in parameters if p["name"] == "types")
    (array,) = (branch for branch in schema["anyOf"] if branch.get("type") == "array")
    items: dict[str, Any] = array["items"]
    return items


@pytest.mark.parametrize("path", ["/api/changes", "/api/events"])
def test_the_schema_lists_the_event_types(app: FastAPI, path: str) -> None:
    items = _types_items(app, path)
    assert items["type"] == "string"
    assert {"enum": list(EVENT_TYPES)} in items["anyOf"]


@pytest.mark.parametrize(
    "types",
    ["garbage", "", "message.created,", ",message.created", " message.created", "message.Created"],
)
async def test_anything_but_event_types_is_refused(
    client: httpx.AsyncClient, auth: Headers, types: str
) -> None:
    response = await client.get("/api/changes", params={"since": "0", "types": types}, headers=auth)
    assert response.status_code == 422, response.text
    assert response.json()["code"] == "invalid_event_type"
    assert [error["field"] for error in response.json()["errors"]] == ["query.types"]


@pytest.mark.parametrize("types", [["sync.completed"], ["sync.completed,account.deleted"]])
async def test_event_types_alone_or_joined_by_commas_are_taken(
    client: httpx.AsyncClient, auth: Headers, types: list[str]
) -> None:
    response = await client.get("/api/changes", params={"since": "0", "types": types}, headers=auth)
    assert response.status_code == 200, response.text
