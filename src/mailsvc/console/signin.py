"""Signing in with an API key, and out."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from mailsvc.auth import service as auth_service
from mailsvc.auth.dependencies import TokensDep
from mailsvc.console.rendering import redirect, render
from mailsvc.console.routing import SIGN_IN_PATH, ConsoleRoute
from mailsvc.console.session import (
    CSRF_FIELD,
    SignInRequired,
    check_csrf,
    check_origin,
    end_session,
    read_session,
    start_session,
)
from mailsvc.errors import AuthenticationError
from mailsvc.kit.http import ResourcesDep, SessionDep

router = APIRouter(route_class=ConsoleRoute)

_MAX_KEY_CHARS = 200


def home_path(tenants: frozenset[str]) -> str:
    """Where a signed-in operator starts: the accounts of their first tenant."""
    return f"/console/{min(tenants)}/accounts"


@router.get("/console")
async def console_home(request: Request, tokens: TokensDep) -> Response:
    """The first tenant's accounts when signed in, else the sign-in page."""
    try:
        signin = read_session(request, tokens)
    except SignInRequired:
        return redirect(request, SIGN_IN_PATH)
    return redirect(request, home_path(signin.claims.tenants))


@router.get(SIGN_IN_PATH)
async def sign_in_page(request: Request) -> Response:
    """The sign-in form."""
    return render(request, "login.html", {})


@router.post(SIGN_IN_PATH)
async def sign_in(
    request: Request,
    session: SessionDep,
    resources: ResourcesDep,
    tokens: TokensDep,
) -> Response:
    """Exchange the API key for the API's access token, kept in the session cookie."""
    check_origin(request)
    form = await request.form(max_fields=5, max_part_size=1024)
    api_key = form.get("api_key")
    if not isinstance(api_key, str) or not 0 < len(api_key) <= _MAX_KEY_CHARS:
        return render(request, "login.html", {"error": "Enter an API key."}, status_code=422)
    expires_in = resources.settings.access_token_expire_minutes * 60
    try:
        issued = await auth_service.login(
            session, api_key=api_key.strip(), tokens=tokens, expires_in=expires_in
        )
    except AuthenticationError:
        return render(
            request, "login.html", {"error": "That API key is not valid."}, status_code=401
        )
    claims = tokens.verify(issued.access_token)
    response = redirect(request, home_path(claims.tenants))
    start_session(request, response, access_token=issued.access_token, max_age=expires_in)
    return response


@router.post("/console/logout")
async def sign_out(request: Request, tokens: TokensDep) -> Response:
    """End the session (the cookie is dropped; the token expires on its own)."""
    try:
        signin = read_session(request, tokens)
    except SignInRequired:
        check_origin(request)  # nothing to end, nothing to protect
    else:
        form = await request.form(max_fields=5, max_part_size=1024)
        check_csrf(request, signin, form.get(CSRF_FIELD))
    response = redirect(request, SIGN_IN_PATH, notice="Signed out.")
    end_session(request, response)
    return response
