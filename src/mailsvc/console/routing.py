"""Console routes answer in HTML: errors become a page, or a notice on the page an
action came from; a missing session becomes the sign-in page."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from starlette.requests import Request
from starlette.responses import Response

from mailsvc.console.rendering import SECURITY_HEADERS, console_url, redirect, render
from mailsvc.console.session import CrossSiteRequest, SignInRequired
from mailsvc.errors import AuthenticationError, MailsvcError

SIGN_IN_PATH = "/console/login"


def section_path(request: Request) -> str:
    """The page an action belongs to: `/console/<tenant>/<section>`."""
    path = request.scope["path"][len(request.scope.get("root_path", "")) :]
    return "/".join(path.split("/")[:4])


def to_sign_in(request: Request) -> Response:
    """Send the browser to the sign-in page (htmx follows `HX-Redirect` for a whole page)."""
    if request.headers.get("hx-request") == "true":
        return Response(
            status_code=200,
            headers={**SECURITY_HEADERS, "HX-Redirect": console_url(request, SIGN_IN_PATH)},
        )
    return redirect(request, SIGN_IN_PATH)


def _error_page(request: Request, status: int, title: str, detail: str) -> Response:
    return render(
        request,
        "error.html",
        {"status": status, "title": title, "detail": detail},
        status_code=status,
    )


class ConsoleRoute(APIRoute):
    """An APIRoute whose failures are rendered for a browser instead of as problem+json."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def console_handler(request: Request) -> Response:
            try:
                return await handler(request)
            except (SignInRequired, AuthenticationError):
                # AuthenticationError: the key behind the session was revoked.
                return to_sign_in(request)
            except CrossSiteRequest:
                return _error_page(
                    request,
                    403,
                    "Forbidden",
                    "The form was not sent from this console page (missing or wrong CSRF "
                    "token). Reload the page and try again.",
                )
            except RequestValidationError:
                # A malformed id in the path names nothing.
                return _error_page(request, 404, "Not Found", "There is no such page.")
            except MailsvcError as exc:
                if request.method == "POST":
                    return redirect(request, section_path(request), error=exc.detail)
                return _error_page(request, exc.status, exc.title, exc.detail)

        return console_handler
