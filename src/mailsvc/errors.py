"""The one error root, rendered as RFC 9457 `application/problem+json`.

Each error carries a stable machine-readable `code`; clients branch on it, never on
the human-readable `detail`.
"""

from __future__ import annotations

from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

PROBLEM_CONTENT_TYPE = "application/problem+json"
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


def problem_response(problem: Problem, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(
        problem.model_dump(exclude_none=True),
        status_code=problem.status,
        media_type=PROBLEM_CONTENT_TYPE,
        headers=headers,
    )


def problems(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """`responses=` entries documenting problem+json answers for OpenAPI."""
    return {
        status: {"model": Problem, "content": {PROBLEM_CONTENT_TYPE: {}}} for status in statuses
    }


def _field_name(location: tuple[int | str, ...]) -> str:
    return ".".join(str(part) for part in location)


async def _on_mailsvc_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, MailsvcError)
    return problem_response(exc.to_problem(), exc.headers)


async def _on_validation_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    # Never echo `input`: a rejected body may contain a password.
    errors = [FieldError(field=_field_name(e["loc"]), message=e["msg"]) for e in exc.errors()]
    names = ", ".join(error.field for error in errors[:5])
    problem = Problem(
        title="Unprocessable Content",
        status=422,
        code="validation_error",
        detail=f"invalid request: {names}",
        errors=errors,
    )
    return problem_response(problem)


async def _on_http_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
    problem = Problem(
        title=str(exc.detail) if exc.status_code != 404 else "Not Found",
        status=exc.status_code,
        code=code,
        detail=str(exc.detail),
    )
    return problem_response(problem, dict(exc.headers or {}))


async def _on_unexpected_error(_: Request, exc: Exception) -> JSONResponse:
    log.exception("http.unhandled_error", error_type=type(exc).__name__)
    problem = Problem(title="Internal Server Error", status=500, code="internal_error")
    return problem_response(problem)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(MailsvcError, _on_mailsvc_error)
    app.add_exception_handler(RequestValidationError, _on_validation_error)
    app.add_exception_handler(StarletteHTTPException, _on_http_error)
    app.add_exception_handler(Exception, _on_unexpected_error)
