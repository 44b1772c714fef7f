"""The console's sign-in cookie and its CSRF token.

The cookie holds `<csrf token>.<access token>`: the API's bearer token for the key
that signed in, and a random token that every form repeats. A page of another site
can make the browser post here, but cannot read the cookie or a console page to
learn the CSRF token, and SameSite=Strict keeps the cookie off such posts anyway.
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass

from starlette.requests import Request
from starlette.responses import Response

from mailsvc.auth.tokens import Claims, InvalidTokenError, TokenCodec

SESSION_COOKIE = "mailsvc_console"
CSRF_FIELD = "csrf_token"
COOKIE_PATH = "/console"


class SignInRequired(Exception):
    """No valid console session: the browser is sent to the sign-in page."""


class CrossSiteRequest(Exception):
    """A form post without this session's CSRF token, or from another origin."""


@dataclass(frozen=True, slots=True)
class ConsoleSession:
    """A signed-in operator: the token's verified claims and the session's CSRF token."""

    claims: Claims
    csrf_token: str


def read_session(request: Request, tokens: TokenCodec) -> ConsoleSession:
    """The request's session; `SignInRequired` without one whose token still verifies."""
    value = request.cookies.get(SESSION_COOKIE, "")
    csrf_token, _, access_token = value.partition(".")
    if not csrf_token or not access_token:
        raise SignInRequired
    try:
        claims = tokens.verify(access_token)
    except InvalidTokenError as exc:
        raise SignInRequired from exc
    return ConsoleSession(claims=claims, csrf_token=csrf_token)


def start_session(request: Request, response: Response, *, access_token: str, max_age: int) -> None:
    """Set the cookie for a fresh session (a new CSRF token with every sign-in)."""
    response.set_cookie(
        SESSION_COOKIE,
        f"{secrets.token_urlsafe(32)}.{access_token}",
        max_age=max_age,
        path=_cookie_path(request),
        secure=request.url.scheme == "https",
        httponly=True,
        samesite="strict",
    )


def end_session(request: Request, response: Response) -> None:
    response.delete_cookie(
        SESSION_COOKIE,
        path=_cookie_path(request),
        secure=request.url.scheme == "https",
        httponly=True,
        samesite="strict",
    )


def check_origin(request: Request) -> None:
    """Refuse a post that the browser says came from another site.

    Browsers send `Sec-Fetch-Site` and `Origin` with form posts; either naming
    another origin is refused. This also covers the sign-in form, which has no
    session (and so no CSRF token) yet.
    """
    fetch_site = request.headers.get("sec-fetch-site")
    if fetch_site is not None and fetch_site not in ("same-origin", "none"):
        raise CrossSiteRequest
    origin = request.headers.get("origin")
    if origin is not None and origin != f"{request.url.scheme}://{request.url.netloc}":
        raise CrossSiteRequest


def check_csrf(request: Request, session: ConsoleSession, submitted: object) -> None:
    """Refuse a post whose form does not carry the session's CSRF token."""
    check_origin(request)
    if not isinstance(submitted, str) or not hmac.compare_digest(
        submitted.encode(), session.csrf_token.encode()
    ):
        raise CrossSiteRequest


def _cookie_path(request: Request) -> str:
    return f"{request.scope.get('root_path', '')}{COOKIE_PATH}"
