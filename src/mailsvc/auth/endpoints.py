"""`POST /auth/login`."""

from __future__ import annotations

from fastapi import APIRouter

from mailsvc.auth import service
from mailsvc.auth.dependencies import TokensDep
from mailsvc.auth.schemas import LoginRequest, TokenResponse
from mailsvc.errors import problems
from mailsvc.kit.http import ResourcesDep, SessionDep

router = APIRouter(prefix="/auth", tags=["auth"])


@router.post(
    "/login",
    operation_id="login",
    response_model=TokenResponse,
    responses=problems(400, 401, 422),
)
async def login(
    body: LoginRequest, session: SessionDep, resources: ResourcesDep, tokens: TokensDep
) -> TokenResponse:
    """Exchange an API key for a bearer access token."""
    return await service.login(
        session,
        api_key=body.api_key.get_secret_value(),
        tokens=tokens,
        expires_in=resources.settings.access_token_expire_minutes * 60,
    )
