import httpx
from fastapi import FastAPI

from mailsvc.auth.service import create_api_key
from mailsvc.runtime import Runtime


async def _api_key(app: FastAPI, *tenants: str, scopes: list[str] | None = None) -> str:
    state: Runtime = app.state.mailsvc
    async with state.sessionmaker.begin() as session:
        created = await create_api_key(session, name="test", tenants=list(tenants), scopes=scopes)
    return created.key


async def test_api_key_logs_in_and_the_token_works(
    app: FastAPI, client: httpx.AsyncClient, tenant_id: str
) -> None:
    key = await _api_key(app, tenant_id)
    response = await client.post("/auth/login", json={"api_key": key})
    assert response.status_code == 200
    body = response.json()
    assert body["token_type"] == "bearer"
    assert body["expires_in"] > 0
    listed = await client.get(
        "/api/accounts", headers={"Authorization": f"Bearer {body['access_token']}"}
    )
    assert listed.status_code == 200
    assert listed.json() == {"items": [], "next_cursor": None}


async def test_unknown_api_key_is_401_problem(client: httpx.AsyncClient) -> None:
    response = await client.post("/auth/login", json={"api_key": "msk_not-a-real-key"})
    assert response.status_code == 401
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["code"] == "invalid_api_key"


async def test_login_without_api_key_names_the_field(client: httpx.AsyncClient) -> None:
    response = await client.post("/auth/login", json={})
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "body.api_key"


async def test_scopes_of_the_key_limit_the_token(
    app: FastAPI, client: httpx.AsyncClient, tenant_id: str
) -> None:
    key = await _api_key(app, tenant_id, scopes=["accounts:read"])
    token = (await client.post("/auth/login", json={"api_key": key})).json()["access_token"]
    headers = {"Authorization": f"Bearer {token}"}
    assert (await client.get("/api/accounts", headers=headers)).status_code == 200
    response = await client.post("/api/accounts", headers=headers, json={})
    assert response.status_code == 403
    assert response.json()["code"] == "insufficient_scope"
