"""A tenant's own API keys: list, create and revoke them (`/api/keys`, the console).

A tenant's keys are the keys granting that tenant alone. A key granting several
(an operator's or admin's, from `mailsvc apikey create --tenant a --tenant b`) is no
one tenant's: listing it would show one tenant another's key, revoking it would let
one tenant cut another's access. Through a tenant such keys do not exist (404), and
a key created through a tenant grants it alone, with scopes the caller holds.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from mailsvc.auth import schemas
from mailsvc.auth.repository import ApiKeyRepository
from mailsvc.auth.revocations import ApiKeyRevocations
from mailsvc.auth.service import create_api_key
from mailsvc.errors import FieldError, NotFoundError, PermissionDeniedError
from mailsvc.kit.db import after_commit
from mailsvc.models import ApiKey

log = structlog.get_logger("mailsvc.auth")


def to_out(api_key: ApiKey) -> schemas.ApiKeyOut:
    """The API form of a key: never its value (which is not stored) nor its hash."""
    return schemas.ApiKeyOut(
        id=api_key.id,
        name=api_key.name,
        scopes=sorted(api_key.scopes),
        created_at=api_key.created_at,
        last_used_at=api_key.last_used_at,
        revoked_at=api_key.revoked_at,
    )


class ApiKeyService:
    """The API keys of one tenant. Never commits: the caller owns the transaction.

    A revoke reaches the tokens already issued for the key through `revocations`:
    this process's cache forgets the key once the transaction commits (through
    `kit.http`'s session dependency, or `kit.db.run_after_commit`), the others'
    within `API_KEY_STATUS_CACHE_SECONDS`.
    """

    def __init__(
        self, session: AsyncSession, tenant_id: str, revocations: ApiKeyRevocations
    ) -> None:
        self._session = session
        self._tenant_id = tenant_id
        self._revocations = revocations
        self._keys = ApiKeyRepository(session)

    async def list(self) -> list[schemas.ApiKeyOut]:
        """The tenant's keys, newest first, revoked ones included."""
        return [to_out(key) for key in await self._keys.list_granting_only(self._tenant_id)]

    async def create(
        self, *, name: str, scopes: Collection[str], held_scopes: frozenset[str]
    ) -> schemas.ApiKeyCreated:
        """A new key granting this tenant alone, with `scopes`; each must be one of
        `held_scopes` (the caller's), or 403 `scope_not_held`.

        The answer holds the key's value, which exists nowhere else afterwards.
        """
        not_held = sorted(set(scopes) - held_scopes)
        if not_held:
            message = f"the token does not hold {', '.join(not_held)}"
            raise PermissionDeniedError(
                f"{message}: a key can only get scopes the caller holds",
                code="scope_not_held",
                errors=[FieldError(field="body.scopes", message=message)],
            )
        created = await create_api_key(
            self._session, name=name, tenants=[self._tenant_id], scopes=sorted(set(scopes))
        )
        await self._session.refresh(created.row)  # created_at, set by the database
        log.info(
            "auth.api_key_created",
            tenant_id=self._tenant_id,
            key_id=str(created.row.id),
            scopes=created.row.scopes,
        )
        return schemas.ApiKeyCreated(**to_out(created.row).model_dump(), api_key=created.key)

    async def revoke(self, key_id: uuid.UUID) -> schemas.ApiKeyOut:
        """Revoke the tenant's key: it logs in no more, and its tokens are refused.

        Idempotent (a revoked key keeps its `revoked_at`); 404 `api_key_not_found` for
        an id that is not one of the tenant's keys.
        """
        key = await self._keys.revoke_granting_only(key_id, self._tenant_id)
        if key is None:
            raise NotFoundError("API key not found", code="api_key_not_found")

        # After the commit: forgotten earlier, a request in between would read the key
        # as still active and keep that for the cache's lifetime.
        async def forget() -> None:
            self._revocations.forget(key_id)

        after_commit(self._session, forget)
        log.info("auth.api_key_revoked", tenant_id=self._tenant_id, key_id=str(key_id))
        return to_out(key)
