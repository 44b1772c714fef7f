"""The API keys page: the tenant's keys, a new key (shown once), revocation."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from pydantic import ValidationError
from starlette.responses import Response

from mailsvc.auth.dependencies import RevocationsDep
from mailsvc.auth.keys import ApiKeyService
from mailsvc.auth.schemas import ApiKeyCreate
from mailsvc.auth.scopes import ALL_SCOPES, Scope
from mailsvc.console.dependencies import Action, Operator, acting, viewing
from mailsvc.console.rendering import redirect, render
from mailsvc.console.routing import ConsoleRoute
from mailsvc.errors import FieldError, UnprocessableError
from mailsvc.kit.http import SessionDep

router = APIRouter(route_class=ConsoleRoute)

Viewer = Annotated[Operator, Depends(viewing(Scope.KEYS_MANAGE))]
Manager = Annotated[Action, Depends(acting(Scope.KEYS_MANAGE))]


async def _keys_page(
    request: Request,
    operator: Operator,
    service: ApiKeyService,
    *,
    new_key: str | None = None,
) -> Response:
    return render(
        request,
        "keys.html",
        {
            **operator.page_context("keys"),
            "keys": await service.list(),
            "new_key": new_key,
            "all_scopes": [scope for scope in ALL_SCOPES if scope in operator.principal.scopes],
        },
    )


@router.get("/console/{tenant}/keys")
async def keys_page(
    request: Request, operator: Viewer, session: SessionDep, revocations: RevocationsDep
) -> Response:
    """The tenant's API keys, newest first, revoked ones included."""
    return await _keys_page(
        request, operator, ApiKeyService(session, operator.tenant_id, revocations)
    )


@router.post("/console/{tenant}/keys")
async def create_key(
    request: Request, action: Manager, session: SessionDep, revocations: RevocationsDep
) -> Response:
    """Create a key for this tenant; the page shows it this once (it is stored hashed)."""
    operator = action.operator
    name = action.form.get("name")
    scopes = [scope for scope in action.form.getlist("scopes") if isinstance(scope, str)]
    # The API's own body model: the same rules for a name and scopes.
    try:
        body = ApiKeyCreate.model_validate(
            {
                "name": name.strip() if isinstance(name, str) else "",
                "scopes": scopes or sorted(operator.principal.scopes),
            }
        )
    except ValidationError as exc:
        fields = sorted({str(error["loc"][0]) for error in exc.errors()})
        raise UnprocessableError(
            f"check the key's {' and '.join(fields)}",
            code="validation_error",
            errors=[FieldError(field=field, message="invalid") for field in fields],
        ) from exc
    service = ApiKeyService(session, operator.tenant_id, revocations)
    created = await service.create(
        name=body.name, scopes=body.scopes, held_scopes=operator.principal.scopes
    )
    # Rendered here, not after a redirect: the key must not be kept anywhere to be
    # shown on a later request.
    return await _keys_page(request, operator, service, new_key=created.api_key)


@router.post("/console/{tenant}/keys/{key_id}/revoke")
async def revoke_key(
    request: Request,
    key_id: uuid.UUID,
    action: Manager,
    session: SessionDep,
    revocations: RevocationsDep,
) -> Response:
    """Revoke a key: it cannot sign in again, and its tokens stop working."""
    key = await ApiKeyService(session, action.operator.tenant_id, revocations).revoke(key_id)
    return redirect(
        request, f"/console/{action.operator.tenant_id}/keys", notice=f"Key “{key.name}” revoked."
    )
