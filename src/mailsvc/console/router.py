"""The console's routes and static files, added to the app unless CONSOLE_ENABLED is off."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from starlette.responses import Response
from starlette.staticfiles import StaticFiles

from mailsvc.console import account_detail, accounts, keys, outbox, signin, webhooks
from mailsvc.console.rendering import SECURITY_HEADERS

STATIC_PATH = "/console/static"


class _StaticFiles(StaticFiles):
    """The vendored scripts and the stylesheet, with the pages' security headers
    (nosniff matters here: a script is only run with its own content type)."""

    def file_response(self, *args: Any, **kwargs: Any) -> Response:
        response = super().file_response(*args, **kwargs)
        for name, value in SECURITY_HEADERS.items():
            if name != "Cache-Control":
                response.headers[name] = value
        return response


def install_console(app: FastAPI) -> None:
    """Serve `/console` from this process: pages, actions and the vendored scripts."""
    app.mount(
        STATIC_PATH, _StaticFiles(packages=[("mailsvc.console", "static")]), name="console-static"
    )
    # Page routes before the account page: `/accounts/rows` is not an account id.
    for module in (signin, accounts, account_detail, outbox, webhooks, keys):
        app.include_router(module.router, include_in_schema=False)
