"""`/docs` (Swagger UI) and `/redoc`, with their scripts served by this process.

FastAPI's own pages load swagger-ui and redoc from a CDN, and show nothing on the
self-hosted and air-gapped installs this service is made for. The files come from the
fastapi-offline package (swagger-ui-dist and redoc's standalone bundle, MIT and
Apache-2.0); this module is its only importer and uses nothing of it but the files.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import fastapi_offline
from fastapi import APIRouter, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse

ASSETS_URL = "/docs/assets"

Asset = Literal["swagger-ui-bundle.js", "swagger-ui.css", "redoc.standalone.js", "favicon.png"]

_ASSETS = Path(fastapi_offline.__file__).parent / "static"

# Operation ids are what generated SDKs name their methods: show them.
_SWAGGER_PARAMETERS = {"displayOperationId": True}

# The pages may load nothing from outside this service: ReDoc's sidebar links its
# maker's logo from a CDN, which would leave the network (or stall on DNS) on an
# air-gapped install; the browser refuses it and ReDoc hides the broken image. Inline
# script and styles are FastAPI's page template and the styles both UIs inject.
_CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self' 'unsafe-inline'; "
    "style-src 'self' 'unsafe-inline'; img-src 'self' data:; font-src 'self' data:; "
    "worker-src 'self' blob:"
)

router = APIRouter(include_in_schema=False)


def _openapi_url(request: Request) -> str:
    # Behind a proxy that mounts the service under a prefix, uvicorn's --root-path
    # names it; the pages must ask for the schema under that prefix too.
    return f"{request.scope.get('root_path', '')}{request.app.openapi_url}"


def _asset_url(request: Request, name: Asset) -> str:
    return f"{request.scope.get('root_path', '')}{ASSETS_URL}/{name}"


@router.get("/docs")
async def swagger_ui(request: Request) -> HTMLResponse:
    """Swagger UI for the OpenAPI schema."""
    page = get_swagger_ui_html(
        openapi_url=_openapi_url(request),
        title=f"{request.app.title} - Swagger UI",
        swagger_js_url=_asset_url(request, "swagger-ui-bundle.js"),
        swagger_css_url=_asset_url(request, "swagger-ui.css"),
        swagger_favicon_url=_asset_url(request, "favicon.png"),
        swagger_ui_parameters=_SWAGGER_PARAMETERS,
    )
    page.headers["Content-Security-Policy"] = _CONTENT_SECURITY_POLICY
    return page


@router.get("/redoc")
async def redoc(request: Request) -> HTMLResponse:
    """ReDoc for the OpenAPI schema."""
    page = get_redoc_html(
        openapi_url=_openapi_url(request),
        title=f"{request.app.title} - ReDoc",
        redoc_js_url=_asset_url(request, "redoc.standalone.js"),
        redoc_favicon_url=_asset_url(request, "favicon.png"),
        # Google Fonts is a CDN too; ReDoc falls back to the browser's fonts.
        with_google_fonts=False,
    )
    page.headers["Content-Security-Policy"] = _CONTENT_SECURITY_POLICY
    return page


@router.get(f"{ASSETS_URL}/{{name}}")
async def asset(name: Asset) -> FileResponse:
    """One of the pages' scripts, styles or icon; the Literal keeps out any other path."""
    return FileResponse(_ASSETS / name)
