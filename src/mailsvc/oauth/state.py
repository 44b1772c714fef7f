"""Pending authorizations of the hosted flow: the `state` parameter and its PKCE verifier.

`state` is 256 random bits and the key of a Redis entry that holds what the callback
needs: tenant, app, PKCE verifier (RFC 7636, S256), where to send the user back. The
entry expires after 10 minutes and is taken with GETDEL, so each state works once:
a replayed, forged or expired state finds nothing. The tenant comes only from that
entry, never from the request, so a state cannot be used in another tenant's name.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import uuid
from dataclasses import asdict, dataclass, field

import redis.asyncio as aioredis

STATE_TTL_SECONDS = 600
_PREFIX = "mailsvc:oauth-state:"


@dataclass(frozen=True, slots=True)
class PendingAuthorization:
    """One started consent, until its callback arrives."""

    tenant_id: str
    app_id: str
    verifier: str = field(repr=False)
    return_url: str
    # The application's own opaque value, handed back on `return_url`.
    client_state: str | None
    # Reconnect this account (new tokens) instead of creating one.
    account_id: str | None
    # Sync and send options for a new account (AccountCreate's, as JSON).
    options: dict[str, object]

    @property
    def app_uuid(self) -> uuid.UUID:
        return uuid.UUID(self.app_id)


def new_state() -> str:
    return secrets.token_urlsafe(32)


def new_verifier() -> str:
    """A PKCE code verifier: 43-128 unreserved characters (RFC 7636 §4.1)."""
    return secrets.token_urlsafe(48)


def challenge(verifier: str) -> str:
    """The S256 code challenge of `verifier`."""
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).decode("ascii").rstrip("=")


async def remember(redis: aioredis.Redis, state: str, pending: PendingAuthorization) -> None:
    await redis.set(_PREFIX + state, json.dumps(asdict(pending)), ex=STATE_TTL_SECONDS)


async def take(redis: aioredis.Redis, state: str) -> PendingAuthorization | None:
    """The pending authorization of `state`, removed so it cannot be used again."""
    if not state or len(state) > 200:
        return None
    raw = await redis.getdel(_PREFIX + state)
    if raw is None:
        return None
    return PendingAuthorization(**json.loads(raw))
