"""The request body cap answers the same 413 whether or not the size was declared."""

from collections.abc import AsyncIterator

import httpx

from mailsvc.config import Settings


async def _chunks(total: int, size: int = 4096) -> AsyncIterator[bytes]:
    sent = 0
    while sent < total:
        chunk = b"x" * min(size, total - sent)
        sent += len(chunk)
        yield chunk


async def test_chunked_body_over_the_cap_is_413(
    client: httpx.AsyncClient, auth: dict[str, str], settings: Settings
) -> None:
    request = client.build_request(
        "POST",
        "/api/accounts",
        content=_chunks(settings.max_request_body_bytes + 1),
        headers={**auth, "content-type": "application/json"},
    )
    assert "content-length" not in request.headers  # sent chunked: nothing declared
    response = await client.send(request)
    assert response.status_code == 413, response.text
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["code"] == "body_too_large"
    assert problem["detail"] == f"request body exceeds {settings.max_request_body_bytes} bytes"
    assert response.headers["x-request-id"]


async def test_chunked_body_under_the_cap_reaches_the_route(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    request = client.build_request(
        "POST",
        "/api/accounts",
        content=_chunks(300, size=100),
        headers={**auth, "content-type": "application/json"},
    )
    response = await client.send(request)
    # Read in full and parsed: 300 x's are not JSON, which the route says itself.
    assert response.status_code == 422, response.text
    assert response.json()["code"] == "validation_error"
