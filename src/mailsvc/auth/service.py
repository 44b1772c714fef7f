"""API keys and logins."""

from __future__ import annotations

import hashlib
import re
import secrets
import uuid
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from mailsvc.auth.repository import ApiKeyRepository
from mailsvc.auth.revocations import api_key_subject
from mailsvc.auth.schemas import TokenResponse
from mailsvc.auth.scopes import ALL_SCOPES
from mailsvc.auth.tokens import TokenCodec
from mailsvc.errors import AuthenticationError, NotFoundError, UnprocessableError
from mailsvc.models import ApiKey

API_KEY_PREFIX = "msk_"
TENANT_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def hash_api_key(api_key: str) -> str:
    return hashlib.sha256(api_key.encode()).hexdigest()


def validate_tenants(tenants: list[str]) -> list[str]:
    if not tenants:
        raise UnprocessableError("at least one tenant is required", code="tenant_required")
    for tenant in tenants:
        if not TENANT_PATTERN.match(tenant):
            raise UnprocessableError(
                f"invalid tenant id {tenant!r}: use letters, digits, '_', '-', '.'",
                code="invalid_tenant",
            )
    return sorted(set(tenants))


def validate_scopes(scopes: list[str]) -> list[str]:
    unknown = sorted(set(scopes) - set(ALL_SCOPES))
    if unknown:
        raise UnprocessableError(
            f"unknown scopes: {', '.join(unknown)}; known: {', '.join(ALL_SCOPES)}",
            code="invalid_scope",
        )
    return sorted(set(scopes))


@dataclass(frozen=True)
class CreatedApiKey:
    """The stored row and the key itself, which exists nowhere else after this."""

    row: ApiKey
    key: str


async def create_api_key(
    session: AsyncSession, *, name: str, tenants: list[str], scopes: list[str] | None = None
) -> CreatedApiKey:
    key = API_KEY_PREFIX + secrets.token_urlsafe(32)
    row = ApiKey(
        name=name,
        key_hash=hash_api_key(key),
        tenants=validate_tenants(tenants),
        scopes=validate_scopes(list(ALL_SCOPES) if scopes is None else scopes),
    )
    await ApiKeyRepository(session).add(row)
    return CreatedApiKey(row=row, key=key)


async def list_api_keys(session: AsyncSession, *, granting: str | None = None) -> list[ApiKey]:
    """Every key (for operators), or those granting `granting`; newest first."""
    return await ApiKeyRepository(session).list_all(granting=granting)


async def revoke_api_key(session: AsyncSession, key_id: uuid.UUID) -> ApiKey:
    """Revoke any key, whatever it grants (for operators); idempotent.

    Its tokens are refused by every api process within `API_KEY_STATUS_CACHE_SECONDS`.
    """
    row = await ApiKeyRepository(session).revoke(key_id)
    if row is None:
        raise NotFoundError("API key not found", code="api_key_not_found")
    return row


async def login(
    session: AsyncSession, *, api_key: str, tokens: TokenCodec, expires_in: int
) -> TokenResponse:
    """Exchange a valid, unrevoked API key for an access token carrying its grants."""
    repository = ApiKeyRepository(session)
    row = await repository.find_active_by_hash(hash_api_key(api_key))
    if row is None:
        raise AuthenticationError("invalid API key", code="invalid_api_key")
    await repository.mark_used(row)
    token = tokens.issue(
        subject=api_key_subject(row.id),
        tenants=row.tenants,
        scopes=row.scopes,
        expires_in=expires_in,
    )
    return TokenResponse(access_token=token, expires_in=expires_in)
