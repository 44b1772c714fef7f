"""The OpenAPI document is what SDK generators and Swagger UI read: keep it complete."""

from typing import Any

import httpx

UNAUTHENTICATED = {"/health", "/ready", "/metrics", "/auth/login"}


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
            assert success, where
            if path not in UNAUTHENTICATED:
                assert "401" in operation["responses"], where
                assert operation.get("security"), f"{where}: no security scheme"
    assert len(operation_ids) == len(set(operation_ids))


async def test_problem_responses_use_the_problem_media_type(client: httpx.AsyncClient) -> None:
    spec = await _spec(client)
    for path, methods in spec["paths"].items():
        for method, operation in methods.items():
            for code, response in operation["responses"].items():
                if code.startswith(("4", "5")) and code != "422":
                    assert "application/problem+json" in response.get("content", {}), (
                        f"{method.upper()} {path} {code}"
                    )


async def test_swagger_ui_is_served(client: httpx.AsyncClient) -> None:
    response = await client.get("/docs")
    assert response.status_code == 200
    assert "swagger-ui" in response.text
