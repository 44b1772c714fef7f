"""The OpenAPI document is what SDK generators and Swagger UI read: keep it complete."""

from typing import Any

import httpx

# The OAuth2 callback is reached by the user's browser from the provider; its `state`
# names the tenant.
UNAUTHENTICATED = {"/health", "/ready", "/metrics", "/auth/login", "/api/oauth/callback"}
# Routes a browser follows, whose success is a redirect.
REDIRECTS = {"/api/oauth/callback"}


async def _spec(client: httpx.AsyncClient) -> dict[str, Any]:
    response = await client.get("/openapi.json")
    assert response.status_code == 200
    spec: dict[str, Any] = response.json()
    return spec


async def test_every_operation_has_id_tag_summary_and_typed_responses(
    client: httpx.AsyncClient,
) -> None:
    spec = await _spec(client)
    operation_ids = []
    for path, methods in spec["paths"].items():
        for method, operation in methods.items():
            where = f"{method.upper()} {path}"
            operation_ids.append(operation.get("operationId"))
            assert operation.get("operationId"), where
            assert "__" not in operation["operationId"], f"{where}: generated id"
            assert operation.get("tags"), where
            assert operation.get("summary") or operation.get("description"), where
            success = [code for code in operation["responses"] if code.startswith("2")]
            if path in REDIRECTS:
                success = [code for code in operation["responses"] if code == "303"]
            assert success, where
            if path not in UNAUTHENTICATED:
                assert "401" in operation["responses"], where
                assert operation.get("security"), f"{where}: no security scheme"
    assert len(operation_ids) == len(set(operation_ids))


async def test_problem_responses_use_only_the_problem_media_type(
    client: httpx.AsyncClient,
) -> None:
    spec = await _spec(client)
    assert "Problem" in spec["components"]["schemas"]
    assert "HTTPValidationError" not in spec["components"]["schemas"]
    for path, methods in spec["paths"].items():
        for method, operation in methods.items():
            for code, response in operation["responses"].items():
                if code.startswith(("4", "5")):
                    where = f"{method.upper()} {path} {code}"
                    # Generated clients pick the schema by the media type received.
                    assert list(response["content"]) == ["application/problem+json"], where
                    schema = response["content"]["application/problem+json"]["schema"]
                    assert schema["$ref"].startswith("#/components/schemas/"), where


async def test_every_route_with_a_body_documents_400_for_an_unreadable_one(
    client: httpx.AsyncClient,
) -> None:
    spec = await _spec(client)
    for path, methods in spec["paths"].items():
        for method, operation in methods.items():
            if "requestBody" in operation:
                assert "400" in operation["responses"], f"{method.upper()} {path}"


async def test_downloads_are_binary_and_events_are_an_event_stream(
    client: httpx.AsyncClient,
) -> None:
    paths = (await _spec(client))["paths"]
    raw = paths["/api/messages/{message_id}/raw"]["get"]["responses"]["200"]["content"]
    attachment = paths["/api/messages/{message_id}/attachments/{attachment_id}"]["get"]
    binary = {"type": "string", "format": "binary"}
    assert raw == {"message/rfc822": {"schema": binary}}
    assert attachment["responses"]["200"]["content"] == {
        "application/octet-stream": {"schema": binary}
    }
    events = paths["/api/events"]["get"]["responses"]["200"]["content"]
    assert list(events) == ["text/event-stream"]


async def test_cursor_parameters_declare_what_the_server_accepts(
    client: httpx.AsyncClient,
) -> None:
    paths = (await _spec(client))["paths"]

    def parameter(path: str, name: str) -> dict[str, Any]:
        found = [p for p in paths[path]["get"]["parameters"] if p["name"] == name]
        schema: dict[str, Any] = found[0]["schema"]
        # Optional parameters are `anyOf: [{string...}, {null}]`.
        return next(s for s in schema.get("anyOf", [schema]) if s.get("type") == "string")

    assert parameter("/api/changes", "since")["pattern"] == r"^(0|[0-9]{1,18}-[0-9]{1,18})$"
    assert parameter("/api/events", "Last-Event-ID")["pattern"] == (
        r"^(0|[0-9]{1,18}-[0-9]{1,18})$"
    )
    for path in ("/api/accounts", "/api/messages", "/api/threads", "/api/webhooks"):
        assert parameter(path, "cursor")["pattern"] == "^[A-Za-z0-9_-]+={0,2}$", path


async def test_405_allows_every_method_of_the_path(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    response = await client.patch(
        "/api/webhooks/e3e70682-c209-1cac-a29f-6fbed82c07cd", headers=auth
    )
    assert response.status_code == 405
    assert response.headers["allow"] == "DELETE, GET, HEAD, PUT"
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["code"] == "method_not_allowed"


async def test_malformed_json_says_what_is_wrong_and_where(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    response = await client.post(
        "/api/webhooks",
        headers={**auth, "Content-Type": "application/json"},
        content=b'{"url": "https://example.com",\n "active" true}',
    )
    assert response.status_code == 422
    problem = response.json()
    expected = "invalid JSON at line 2 column 11: Expecting ':' delimiter"
    assert problem["errors"] == [{"field": "body", "message": expected}]
    assert problem["detail"] == f"body: {expected}"


async def test_an_undecodable_body_is_a_documented_400(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    response = await client.post(
        "/api/webhooks",
        headers={**auth, "Content-Type": "application/json"},
        content=b'{"url": "\xff"}',
    )
    assert response.status_code == 400
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["code"] == "invalid_body"


async def test_swagger_ui_is_served(client: httpx.AsyncClient) -> None:
    response = await client.get("/docs")
    assert response.status_code == 200
    assert "swagger-ui" in response.text
