"""A hot route answers as FastAPI would for the same signature, without its solving."""

from __future__ import annotations

import uuid
from typing import Annotated

import httpx
import pytest
from fastapi import APIRouter, Depends, FastAPI, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from mailsvc.kit.hot_route import FastParameterError, HotRoute, hot_get, with_fast_path


class Item(BaseModel):
    """What both routes answer."""

    id: uuid.UUID
    limit: int
    word: str | None
    who: str


async def caller(request: Request) -> str:
    token = request.headers.get("authorization")
    if token is None:
        return await _refuse()
    return token


async def caller_fast(request: Request) -> str:
    if request.headers.get("x-bad") is not None:
        raise FastParameterError(
            [{"type": "bad", "loc": ("header", "x-bad"), "msg": "bad header", "input": None}]
        )
    return await caller(request)


async def _refuse() -> str:
    raise PermissionError("no token")


with_fast_path(caller, caller_fast)


def _app(route_class: type | None) -> FastAPI:
    app = FastAPI()
    router = APIRouter()

    async def endpoint(
        item_id: uuid.UUID,
        who: Annotated[str, Depends(caller)],
        limit: Annotated[int, Query(ge=1, le=10)] = 5,
        word: Annotated[str | None, Query(alias="w", max_length=3)] = None,
    ) -> Response:
        body = Item(id=item_id, limit=limit, word=word, who=who)
        return Response(body.model_dump_json(), media_type="application/json")

    if route_class is HotRoute:
        hot_get(router, "/items/{item_id}", response_model=Item)(endpoint)
    else:
        router.get("/items/{item_id}", response_model=Item)(endpoint)
    app.include_router(router)

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [{"loc": list(error["loc"]), "msg": error["msg"]} for error in exc.errors()]
        return JSONResponse({"errors": errors}, status_code=422)

    @app.exception_handler(PermissionError)
    async def refused(_: Request, exc: PermissionError) -> JSONResponse:
        return JSONResponse({"refused": str(exc)}, status_code=401)

    return app


REQUESTS = [
    ("/items/0190a2b4-0000-7000-8000-000000000001", {"authorization": "a"}),
    ("/items/0190a2b4-0000-7000-8000-000000000001?limit=7&w=abc", {"authorization": "a"}),
    ("/items/0190a2b4-0000-7000-8000-000000000001?limit=0&w=abcd", {"authorization": "a"}),
    ("/items/not-a-uuid?limit=x", {"authorization": "a"}),
    ("/items/not-a-uuid?limit=x", {}),  # the dependency's refusal comes first
    ("/items/0190a2b4-0000-7000-8000-000000000001?w=x&w=yz&unknown=1", {"authorization": "a"}),
]


@pytest.mark.parametrize(("path", "headers"), REQUESTS)
async def test_a_hot_route_answers_as_fastapi_does(path: str, headers: dict[str, str]) -> None:
    answers = []
    for route_class in (None, HotRoute):
        transport = httpx.ASGITransport(app=_app(route_class))
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            response = await client.get(path, headers=headers)
        answers.append((response.status_code, response.json()))
    assert answers[0] == answers[1]


async def test_fast_path_parameter_errors_join_the_route_s_own() -> None:
    transport = httpx.ASGITransport(app=_app(HotRoute))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        response = await client.get(
            "/items/0190a2b4-0000-7000-8000-000000000001?limit=0",
            headers={"authorization": "a", "x-bad": "1"},
        )
    assert response.status_code == 422
    assert [error["loc"] for error in response.json()["errors"]] == [
        ["header", "x-bad"],
        ["query", "limit"],
    ]


async def plain(request: Request) -> str:
    return "x"


async def with_plain_dependency(value: Annotated[str, Depends(plain)]) -> Response:
    return Response(value)


async def with_body(item: Item) -> Response:
    return Response(item.model_dump_json())


def test_a_dependency_without_a_fast_path_is_refused_when_the_route_is_built() -> None:
    with pytest.raises(TypeError, match="has no fast path"):
        hot_get(APIRouter(), "/x")(with_plain_dependency)


def test_a_body_is_refused_when_the_route_is_built() -> None:
    with pytest.raises(TypeError, match="only path and query parameters"):
        hot_get(APIRouter(), "/x")(with_body)
