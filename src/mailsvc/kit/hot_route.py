"""Routes whose requests skip FastAPI's per-request dependency solving: the hot reads.

FastAPI solves a route's dependencies and parameters anew for every request, one by
one, re-inspecting each parameter's annotation as it goes. For the message list (15
query parameters, the auth dependency, two components) that was a quarter of the
request's CPU once the query itself went to the raw pool (docs/performance.md).

A `HotRoute` is still a FastAPI route: the OpenAPI operation, the response model and
the error responses come from the endpoint's signature as for any other. Only its
request handler differs, built once from that signature:

- the path and query parameters are validated in one pass by a pydantic model made
  of the same field declarations, so a bad value gets the same error FastAPI's
  per-field validation gives (`query.limit`, "Input should be ...");
- each dependency must offer a fast path (`with_fast_path`): one coroutine taking the
  request, which does the same work without FastAPI's solving (the auth dependency
  reads its two headers itself); a dependency without one is refused when the route
  is built, not at request time;
- the endpoint must answer a `Response` (the hot reads send the bytes PostgreSQL
  built).

Errors keep FastAPI's order: dependencies first (a missing token is a 401 whatever
the query holds), then every parameter error at once as one 422.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar, get_args, get_origin

from fastapi import Request, Response, routing
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute, APIRouter
from pydantic import BaseModel, ConfigDict, ValidationError, create_model

T = TypeVar("T")

FastPath = Callable[[Request], Awaitable[Any]]
_FAST_PATH = "__mailsvc_fast_path__"


def with_fast_path(dependency: Callable[..., Awaitable[T]], fast: FastPath) -> None:
    """Declare `fast(request)` as doing what `dependency` does when FastAPI solves it."""
    setattr(dependency, _FAST_PATH, fast)


class FastParameterError(Exception):
    """A fast path's parameter errors, in FastAPI's form (`loc` starts with where the
    parameter is: `header`, `query`, ...); `HotRoute` answers them with the route's
    own parameter errors as one 422."""

    def __init__(self, errors: list[dict[str, Any]]) -> None:
        super().__init__("invalid request parameters")
        self.errors = errors


class HotRoute(APIRoute):
    """A FastAPI route answered by a handler planned once from its signature."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        # An included route is planned again with what its inclusion adds (a prefix,
        # the including router's dependencies), as FastAPI's own handler is.
        context = routing._effective_route_context_var.get()
        dependant = self.dependant
        if context is not None and context.original_route is self:
            dependant = context.dependant
        unsupported = [
            kind
            for kind, params in (
                ("header", dependant.header_params),
                ("cookie", dependant.cookie_params),
                ("body", dependant.body_params),
            )
            if params
        ]
        if unsupported or dependant.request_param_name or dependant.response_param_name:
            raise TypeError(f"{self.path}: a hot route takes only path and query parameters")
        dependencies: list[tuple[str, FastPath]] = []
        for sub in dependant.dependencies:
            fast = getattr(sub.call, _FAST_PATH, None)
            if fast is None or sub.name is None:
                raise TypeError(f"{self.path}: dependency {sub.call!r} has no fast path")
            dependencies.append((sub.name, fast))
        path_names = {field.alias for field in dependant.path_params}
        # A list parameter is repeated in the query (`?label=a&label=b`): all its values.
        repeated = [
            field.alias
            for field in dependant.query_params
            if _takes_many(field.field_info.annotation)
        ]
        fields = [*dependant.path_params, *dependant.query_params]
        parameters: type[BaseModel] = create_model(  # type: ignore[call-overload]
            f"{self.name}_parameters",
            __config__=ConfigDict(extra="ignore"),
            **{field.name: (field.field_info.annotation, field.field_info) for field in fields},
        )
        endpoint = self.endpoint

        async def handle(request: Request) -> Response:
            values: dict[str, Any] = {}
            errors: list[dict[str, Any]] = []
            for name, fast in dependencies:
                try:
                    values[name] = await fast(request)
                except FastParameterError as exc:
                    errors += exc.errors
            query: dict[str, Any] = {**request.query_params}
            for name in repeated:
                if name in query:
                    query[name] = request.query_params.getlist(name)
            try:
                given = parameters.model_validate({**query, **request.path_params})
            except ValidationError as exc:
                errors += [
                    {**error, "loc": ("path" if error["loc"][0] in path_names else "query",
                                      *error["loc"])}
                    for error in exc.errors(include_url=False)
                ]  # fmt: skip
            if errors:
                raise RequestValidationError(errors)
            response = await endpoint(**values, **dict(given))
            if not isinstance(response, Response):
                raise TypeError(f"{self.path}: a hot route's endpoint must answer a Response")
            return response

        return handle


def _takes_many(annotation: Any) -> bool:
    """Whether a parameter's annotation is a list (`list[str]`, `list[str] | None`)."""
    candidates = [annotation, *get_args(annotation)]
    return any(get_origin(candidate) in (list, tuple, set, frozenset) for candidate in candidates)


Endpoint = TypeVar("Endpoint", bound=Callable[..., Awaitable[Response]])


def hot_get(router: APIRouter, path: str, **options: Any) -> Callable[[Endpoint], Endpoint]:
    """`@router.get(path, **options)` for a `HotRoute`, in the router's route order."""

    def register(endpoint: Endpoint) -> Endpoint:
        router.add_api_route(
            path, endpoint, methods=["GET"], route_class_override=HotRoute, **options
        )
        return endpoint

    return register
