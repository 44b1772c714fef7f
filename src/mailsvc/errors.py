"""The one error root, rendered as RFC 9457 `application/problem+json`.

Each error carries a stable machine-readable `code`; clients branch on it, never on
the human-readable `detail`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import asyncpg
import redis.exceptions
import sqlalchemy.exc
import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from pydantic.json_schema import models_json_schema
from starlette.exceptions import HTTPException as StarletteHTTPException

# The registry, re-exported beside the errors that carry its codes.
from mailsvc.error_codes import ERROR_CODES as ERROR_CODES
from mailsvc.error_codes import ErrorCode as ErrorCode

PROBLEM_CONTENT_TYPE = "application/problem+json"
# Where FastAPI keeps the schemas `$ref`s point to.
_COMPONENTS = "#/components/schemas/"
log = structlog.get_logger("mailsvc.errors")


class FieldError(BaseModel):
    """One invalid field of a request."""

    field: str = Field(description="Dotted location of the field, e.g. `body.imap.port`.")
    message: str


class Problem(BaseModel):
    """An RFC 9457 problem document; `code` is stable across releases."""

    type: str = Field(default="about:blank", description="URI identifying the problem type.")
    title: str
    status: int
    code: str = Field(description="Stable machine-readable error code.")
    detail: str | None = None
    errors: list[FieldError] | None = Field(
        default=None, description="Per-field errors of a rejected request."
    )

    model_config = {
        "json_schema_extra": {
            "examples": [
                {
                    "type": "about:blank",
                    "title": "Not Found",
                    "status": 404,
                    "code": "account_not_found",
                    "detail": "account not found",
                }
            ]
        }
    }


class MailsvcError(Exception):
    """Root of every error the API answers with on purpose."""

    status: int = 500
    code: str = "internal_error"
    title: str = "Internal Server Error"

    def __init__(
        self,
        detail: str,
        *,
        code: str | None = None,
        errors: list[FieldError] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        if code is not None:
            self.code = code
        self.errors = errors
        self.headers = headers or {}

    def to_problem(self) -> Problem:
        return Problem(
            title=self.title,
            status=self.status,
            code=self.code,
            detail=self.detail,
            errors=self.errors,
        )


class BadRequestError(MailsvcError):
    status, code, title = 400, "bad_request", "Bad Request"


class AuthenticationError(MailsvcError):
    status, code, title = 401, "unauthorized", "Unauthorized"

    def __init__(self, detail: str, *, code: str | None = None) -> None:
        super().__init__(detail, code=code, headers={"WWW-Authenticate": "Bearer"})


class PermissionDeniedError(MailsvcError):
    status, code, title = 403, "forbidden", "Forbidden"


class NotFoundError(MailsvcError):
    status, code, title = 404, "not_found", "Not Found"


class ConflictError(MailsvcError):
    status, code, title = 409, "conflict", "Conflict"


class GoneError(MailsvcError):
    status, code, title = 410, "gone", "Gone"


class PayloadTooLargeError(MailsvcError):
    status, code, title = 413, "payload_too_large", "Content Too Large"


class UnprocessableError(MailsvcError):
    status, code, title = 422, "unprocessable", "Unprocessable Content"


class RateLimitedError(MailsvcError):
    status, code, title = 429, "rate_limited", "Too Many Requests"


class BadGatewayError(MailsvcError):
    """The account's mail server failed or refused; nothing was changed in mailsvc."""

    status, code, title = 502, "mail_server_error", "Bad Gateway"


class SearchUnavailableError(MailsvcError):
    """The tenant's search index is missing or being rebuilt from PostgreSQL; lists
    and reads still answer, searches again once the rebuild is done."""

    status, code, title = 503, "search_rebuilding", "Service Unavailable"

    def __init__(self, detail: str, *, retry_after_seconds: int = 5) -> None:
        super().__init__(detail, headers={"Retry-After": str(retry_after_seconds)})


class DependencyUnavailableError(MailsvcError):
    """PostgreSQL or Redis cannot be reached (down, restarting, connection cut).

    Answered instead of a 500: the request may succeed unchanged once the server is
    back, which the service notices by itself (docs/reliability.md).
    """

    status, code, title = 503, "dependency_unavailable", "Service Unavailable"

    def __init__(self, detail: str, *, retry_after_seconds: int = 5) -> None:
        super().__init__(detail, headers={"Retry-After": str(retry_after_seconds)})


def problem_response(problem: Problem, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(
        problem.model_dump(exclude_none=True),
        status_code=problem.status,
        media_type=PROBLEM_CONTENT_TYPE,
        headers=headers,
    )


def problem_content(schema_name: str = "Problem") -> dict[str, Any]:
    """An OpenAPI `content` entry: a problem document under the media type we send."""
    return {PROBLEM_CONTENT_TYPE: {"schema": {"$ref": _COMPONENTS + schema_name}}}


def problems(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """`responses=` entries documenting problem+json answers for OpenAPI.

    Only `application/problem+json` is declared (what the handlers send): FastAPI's
    `model=` would add the schema under `application/json` too, and generated clients
    would then read every error as empty. `install_problem_schemas` adds the component.
    """
    return {status: {"content": problem_content()} for status in statuses}


def _serve_as_problem(content: dict[str, Any]) -> None:
    """Declare an error answer under the one media type the handlers send.

    Catches what `problems()` cannot: a `model=` response (its schema lands under
    `application/json`) and FastAPI's own 422 (`HTTPValidationError`, a shape we
    never send: `_on_validation_error` answers with a `Problem`).
    """
    declared = content.pop("application/json", None)
    if declared is None:
        return
    schema = declared.get("schema", {})
    if schema.get("$ref", "").endswith("/HTTPValidationError"):
        schema = {"$ref": _COMPONENTS + "Problem"}
    problem = content.setdefault(PROBLEM_CONTENT_TYPE, {})
    if not problem.get("schema"):
        problem["schema"] = schema


def install_problem_schemas(app: FastAPI) -> None:
    """Make `app.openapi()` define the `Problem` schema the `problems()` entries use."""
    generate: Callable[[], dict[str, Any]] = app.openapi
    finished: dict[str, Any] = {}

    def openapi() -> dict[str, Any]:
        # Done once: every `/openapi.json` request and every 405 (its `Allow`) reads it.
        if finished:
            return finished
        schema = generate()
        _, definitions = models_json_schema(
            [(Problem, "serialization")], ref_template=_COMPONENTS + "{model}"
        )
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        for name, definition in definitions.get("$defs", {}).items():
            components.setdefault(name, definition)
        for methods in schema.get("paths", {}).values():
            for operation in methods.values():
                for status, response in operation.get("responses", {}).items():
                    if status[0] in "45":
                        _serve_as_problem(response.get("content", {}))
        components.pop("HTTPValidationError", None)
        components.pop("ValidationError", None)
        finished.update(schema)
        return finished

    app.openapi = openapi  # type: ignore[method-assign]


# FastAPI's detail when a body cannot be decoded or parsed (not UTF-8, a broken form).
_UNREADABLE_BODY = "There was an error parsing the body"


def _field_name(location: tuple[int | str, ...]) -> str:
    return ".".join(str(part) for part in location)


async def _on_mailsvc_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, MailsvcError)
    return problem_response(exc.to_problem(), exc.headers)


def _field_error(error: dict[str, Any]) -> FieldError:
    if error.get("type") == "json_invalid":
        # FastAPI locates broken JSON as ("body", <character offset>): say where in
        # words (line and column) and what is wrong, on the field `body`.
        return FieldError(field="body", message=_json_error_message(error))
    return FieldError(field=_field_name(error["loc"]), message=error["msg"])


def _json_error_message(error: dict[str, Any]) -> str:
    reason = str(error.get("ctx", {}).get("error", "JSON decode error"))
    location = error.get("loc", ())
    offset = location[1] if len(location) > 1 and isinstance(location[1], int) else None
    document = error.get("_document")
    if offset is None or not isinstance(document, str):
        return f"invalid JSON: {reason}"
    line = document.count("\n", 0, offset) + 1
    column = offset - (document.rfind("\n", 0, offset) + 1) + 1
    return f"invalid JSON at line {line} column {column}: {reason}"


async def _on_validation_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    document = exc.body if isinstance(exc.body, str) else None
    # Never echo `input`: a rejected body may contain a password.
    errors = [_field_error({**e, "_document": document}) for e in exc.errors()]
    names = ", ".join(error.field for error in errors[:5])
    detail = f"invalid request: {names}"
    if len(errors) == 1 and errors[0].field == "body":
        detail = f"body: {errors[0].message}"
    problem = Problem(
        title="Unprocessable Content",
        status=422,
        code="validation_error",
        detail=detail,
        errors=errors,
    )
    return problem_response(problem)


def _allowed_methods(request: Request) -> str:
    """The methods the OpenAPI document lists for this path.

    Starlette's own `Allow` names only the first route matching the path, though GET
    and PUT of one path are separate routes; the document is the contract clients
    (and schemathesis) hold `Allow` to.
    """
    path = request.scope["path"]
    methods: set[str] = set()
    for template, operations in request.app.openapi()["paths"].items():
        pattern = "[^/]+".join(re.escape(part) for part in re.split(r"\{[^}]+\}", template))
        if re.fullmatch(pattern, path):
            methods |= {method.upper() for method in operations}
    if "GET" in methods:
        methods.add("HEAD")  # Starlette answers HEAD wherever it answers GET
    return ", ".join(sorted(methods))


async def _on_http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    headers = dict(exc.headers or {})
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
    if exc.status_code == 400 and exc.detail == _UNREADABLE_BODY:
        code = "invalid_body"
    if exc.status_code == 405:
        headers["Allow"] = _allowed_methods(request)
    problem = Problem(
        title=str(exc.detail) if exc.status_code != 404 else "Not Found",
        status=exc.status_code,
        code=code,
        detail=str(exc.detail),
    )
    return problem_response(problem, headers)


# What a lost or refused connection to PostgreSQL looks like, on SQLAlchemy's path and
# on the hot reads' raw asyncpg pool: a server shutting down or starting up, a
# connection that died under a statement; and no connection at all (refused, reset),
# which asyncpg raises as the OS's `ConnectionError`, counted only when raised there.
_DATABASE_GONE = (
    asyncpg.PostgresConnectionError,
    asyncpg.CannotConnectNowError,
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
)
_DATABASE_DRIVERS = ("asyncpg", "sqlalchemy")


def _raised_by_database_driver(exc: BaseException) -> bool:
    traceback = exc.__traceback__
    while traceback is not None:
        if str(traceback.tb_frame.f_globals.get("__name__", "")).startswith(_DATABASE_DRIVERS):
            return True
        traceback = traceback.tb_next
    return False


def unreachable_dependency(exc: BaseException) -> str | None:
    """`"Redis"` or `"PostgreSQL"` when `exc` says that server cannot be reached now;
    None for anything else (a bug, a constraint, a bad statement: still a 500)."""
    if isinstance(exc, redis.exceptions.ConnectionError | redis.exceptions.TimeoutError):
        return "Redis"
    if isinstance(exc, sqlalchemy.exc.DBAPIError) and exc.connection_invalidated:
        return "PostgreSQL"
    # SQLAlchemy wraps the driver's error (`orig`), which wraps asyncpg's (its cause).
    seen: BaseException | None = exc
    for _ in range(4):
        if seen is None:
            break
        if isinstance(seen, _DATABASE_GONE) or (
            isinstance(seen, ConnectionError) and _raised_by_database_driver(seen)
        ):
            return "PostgreSQL"
        seen = getattr(seen, "orig", None) or seen.__cause__
    return None


def outage_detail(exc: BaseException) -> str:
    """What to log of an outage error: the driver's message, never SQLAlchemy's text of
    the statement and its parameters (message bodies, sealed secrets)."""
    cause = exc.orig if isinstance(exc, sqlalchemy.exc.DBAPIError) else exc
    return f"{type(cause).__name__}: {cause}"[:200]


async def _on_dependency_error(_: Request, exc: Exception) -> JSONResponse:
    dependency = unreachable_dependency(exc)
    if dependency is None:
        raise exc  # not an outage: on to the catch-all (a 500, logged with its stack)
    # One line per refused request, no stack: an outage would otherwise flood the log.
    log.warning("http.dependency_unavailable", dependency=dependency, error=outage_detail(exc))
    error = DependencyUnavailableError(f"{dependency} cannot be reached; retry later")
    return problem_response(error.to_problem(), error.headers)


async def _on_unexpected_error(_: Request, exc: Exception) -> JSONResponse:
    log.exception("http.unhandled_error", error_type=type(exc).__name__)
    problem = Problem(title="Internal Server Error", status=500, code="internal_error")
    return problem_response(problem)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(MailsvcError, _on_mailsvc_error)
    app.add_exception_handler(RequestValidationError, _on_validation_error)
    app.add_exception_handler(StarletteHTTPException, _on_http_error)
    # Registered by class: Starlette picks the closest handler in the exception's MRO,
    # so these answer before the catch-all below (which would log a stack and re-raise).
    for unreachable in (
        redis.exceptions.ConnectionError,
        redis.exceptions.TimeoutError,
        sqlalchemy.exc.DBAPIError,
        *_DATABASE_GONE,
        ConnectionError,
    ):
        app.add_exception_handler(unreachable, _on_dependency_error)
    app.add_exception_handler(Exception, _on_unexpected_error)
