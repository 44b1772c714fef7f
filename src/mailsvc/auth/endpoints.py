"""`POST /auth/login`."""

from __future__ import annotations

from fastapi import APIRouter

from mailsvc.auth import service
from mailsvc.auth.schemas import LoginRequest, TokenResponse
from mailsvc.dependencies import SessionDep, StateDep
from mailsvc.errors import problems

router = APIRouter(prefix="/auth", tags=["auth"])


@router.post(
    "/login",
    operation_id="login",
    response_model=TokenResponse,
    responses=problems(401, 422),
)
async def login(body: LoginRequest, session: SessionDep, state: StateDep) -> TokenResponse:
    """Exchange an API key for a bearer access token."""
    return await service.login(
        session,
        api_key=body.api_key.get_secret_value(),
        tokens=state.tokens,
        expires_in=state.settings.access_token_expire_minutes * 60,
    )
