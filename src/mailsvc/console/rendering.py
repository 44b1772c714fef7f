"""Pages from templates, with the console's security headers and one-shot notices."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

# Scripts and styles from this origin only: no inline script, no inline style, no
# eval (htmx is configured without it), nothing from elsewhere.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    # Pages show a tenant's data: never stored by the browser or a proxy.
    "Cache-Control": "no-store",
}

FLASH_COOKIE = "mailsvc_console_flash"
_FLASH_KINDS = ("notice", "error")
_FLASH_MAX_CHARS = 500

_templates = Environment(
    loader=PackageLoader("mailsvc.console", "templates"),
    autoescape=select_autoescape(default=True, default_for_string=True),
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)


def _when(value: datetime | str | None) -> str:
    """A timestamp as operators read it: UTC, to the second."""
    if value is None:
        return "—"
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.strftime("%Y-%m-%d %H:%M:%S UTC")


_templates.filters["when"] = _when


def console_url(request: Request, path: str) -> str:
    """`path` (starting with /console) under the service's root path."""
    return f"{request.scope.get('root_path', '')}{path}"


def render(
    request: Request,
    template: str,
    context: dict[str, Any],
    *,
    status_code: int = 200,
    whole_page: bool = True,
) -> HTMLResponse:
    """The page, with security headers, and with the notice left by the last action
    (which a part of a page, `whole_page=False`, leaves for the next page)."""
    flash = _take_flash(request) if whole_page else None
    body = _templates.get_template(template).render(
        request=request, root=request.scope.get("root_path", ""), flash=flash, **context
    )
    response = HTMLResponse(body, status_code=status_code, headers=SECURITY_HEADERS)
    if flash is not None:
        response.delete_cookie(FLASH_COOKIE, path=console_url(request, "/console"))
    return response


def render_fragment(template: str, context: dict[str, Any]) -> str:
    """A piece of a page (a table row for a live update), as HTML."""
    return _templates.get_template(template).render(**context)


def redirect(
    request: Request, path: str, *, notice: str | None = None, error: str | None = None
) -> Response:
    """303 to a console page, leaving a notice (or an error) for it to show once.

    The notice travels in a short-lived cookie rather than the URL, so no text from
    a request is ever reflected from a link someone else made.
    """
    response = RedirectResponse(
        console_url(request, path), status_code=303, headers=SECURITY_HEADERS
    )
    for kind, text in (("notice", notice), ("error", error)):
        if text is not None:
            response.set_cookie(
                FLASH_COOKIE,
                json.dumps({"kind": kind, "text": text[:_FLASH_MAX_CHARS]}),
                max_age=60,
                path=console_url(request, "/console"),
                secure=request.url.scheme == "https",
                httponly=True,
                samesite="strict",
            )
    return response


def _take_flash(request: Request) -> dict[str, str] | None:
    raw = request.cookies.get(FLASH_COOKIE)
    if raw is None:
        return None
    try:
        flash = json.loads(raw)
    except ValueError:
        return None
    if (
        not isinstance(flash, dict)
        or flash.get("kind") not in _FLASH_KINDS
        or not isinstance(flash.get("text"), str)
    ):
        return None
    return {"kind": flash["kind"], "text": flash["text"][:_FLASH_MAX_CHARS]}
