"""`/health`, `/ready` and `/metrics`: for orchestrators and scrapers, without API tokens.

`/metrics` alone may require a bearer token of its own (METRICS_TOKEN): the numbers
are no tenant's data, but they show how the service is used and who could load it.
"""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from mailsvc.errors import PROBLEM_CONTENT_TYPE, AuthenticationError, Problem, problems
from mailsvc.kit.http import ResourcesDep
from mailsvc.ops.checks import run_checks
from mailsvc.ops.metrics import METRICS_CONTENT_TYPE, render_metrics, scrape_allowed

router = APIRouter(tags=["operations"])


class Health(BaseModel):
    """The process is alive."""

    status: Literal["ok"] = "ok"


class Readiness(BaseModel):
    """Every dependency the service needs to answer requests, by name."""

    status: Literal["ready"] = "ready"
    checks: dict[str, str]


class NotReady(Problem):
    """`/ready` failed; `checks` names the failing parts."""

    checks: dict[str, str]


@router.get("/health", operation_id="health", response_model=Health)
async def health() -> Health:
    """Liveness: answers while the process runs, whatever its dependencies do."""
    return Health()


@router.get(
    "/ready",
    operation_id="ready",
    response_model=Readiness,
    responses={503: {"model": NotReady, "content": {PROBLEM_CONTENT_TYPE: {}}}},
)
async def ready(resources: ResourcesDep) -> Readiness | JSONResponse:
    """Readiness: database reachable, Redis reachable, migrations at head."""
    results = await run_checks(resources.engine, resources.redis)
    checks = {result.name: ("ok" if result.ok else result.detail) for result in results}
    failing = [result.name for result in results if not result.ok]
    if failing:
        problem = NotReady(
            title="Service Unavailable",
            status=503,
            code="not_ready",
            detail=f"not ready: {', '.join(failing)}",
            checks=checks,
        )
        return JSONResponse(
            problem.model_dump(exclude_none=True), status_code=503, media_type=PROBLEM_CONTENT_TYPE
        )
    return Readiness(checks=checks)


@router.get(
    "/metrics",
    operation_id="metrics",
    response_class=Response,
    responses={
        200: {"content": {METRICS_CONTENT_TYPE: {}}, "description": "Prometheus text."},
        **problems(401),
    },
)
async def metrics(request: Request, resources: ResourcesDep) -> Response:
    """Prometheus metrics of this process (with METRICS_TOKEN set, for its bearer only)."""
    if not scrape_allowed(resources.settings.metrics_token, request.headers.get("authorization")):
        raise AuthenticationError("metrics need the METRICS_TOKEN bearer token")
    return Response(render_metrics(), media_type=METRICS_CONTENT_TYPE)
