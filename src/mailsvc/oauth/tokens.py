"""Fresh access tokens for OAuth2 accounts: refresh ahead of expiry, one refresh at a time.

    access_token(account)                 the stored token while it has more than
                                          OAUTH_REFRESH_MARGIN_SECONDS left
    access_token(account, rejected=tok)   a server refused `tok`: a newer one, refreshed
                                          unless someone else already replaced it

A refresh happens once per account however many operations need it at the same
moment: within a process they share one task; across processes a Redis lease
(`mailsvc:oauth-refresh:<account>`) admits one refresher, and the others poll the
account row until its tokens change (or the lease is gone and one of them takes it).
The provider is called outside any transaction, and the result stored in a short one
of its own: a rotated refresh token must be kept even if the caller's work fails,
or the account could never refresh again. A crash between the provider's answer and
the commit loses that answer; with rotation the old refresh token may then be spent
too, which is the provider's choice (Google and Microsoft accept it again for a while).

A refusal (`invalid_grant`: revoked, expired, password changed; `invalid_client`: the
app was deleted or its secret changed) puts the account in `auth_error` with the
provider's reason and an `account.state_changed` event. An account in `auth_error`
never calls the provider again: it waits for new tokens (`PUT /api/accounts/{id}`
or the hosted flow). An outage (5xx, garbage, timeout) changes nothing stored.
"""

from __future__ import annotations

import asyncio
import secrets
import time
import uuid
from datetime import datetime, timedelta
from typing import NoReturn

import redis.asyncio as aioredis
import structlog
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from mailsvc.config import Settings
from mailsvc.event.account_state import change_account_state
from mailsvc.kit.crypto import SecretBox
from mailsvc.kit.db import utcnow
from mailsvc.kit.lease import Leases
from mailsvc.models import Account
from mailsvc.oauth.provider import (
    ClientCredentials,
    OAuthRefused,
    OAuthUnavailable,
    ProviderClient,
    TokenGrant,
)
from mailsvc.oauth.repository import OAuthAccountRepository, OAuthAppRepository
from mailsvc.oauth.secrets import TokenPair, open_client_secret, open_tokens, seal_tokens

log = structlog.get_logger("mailsvc.oauth.tokens")

# Longer than one token request may take (OAUTH_HTTP_TIMEOUT_SECONDS is capped at 120).
_LEASE_SECONDS = 150.0
_POLL_SECONDS = 0.05


class OAuthGrantLost(Exception):
    """The account's tokens cannot be refreshed until new ones are given (`auth_error`)."""


def lease_key(account_id: uuid.UUID) -> str:
    return f"mailsvc:oauth-refresh:{account_id}"


def expires_at(grant: TokenGrant, *, now: datetime) -> datetime | None:
    return now + timedelta(seconds=grant.expires_in) if grant.expires_in is not None else None


class OAuthTokens:
    """Access tokens for OAuth2 accounts, refreshed as needed (see the module doc)."""

    def __init__(
        self,
        *,
        sessionmaker: async_sessionmaker[AsyncSession],
        redis: aioredis.Redis,
        secrets: SecretBox,
        settings: Settings,
        provider: ProviderClient,
    ) -> None:
        self._sessionmaker = sessionmaker
        self._redis = redis
        self._secrets = secrets
        self._provider = provider
        self._margin = timedelta(seconds=settings.oauth_refresh_margin_seconds)
        self._wait_seconds = settings.oauth_http_timeout_seconds + 5
        self._refreshing: dict[uuid.UUID, asyncio.Task[str]] = {}

    async def access_token(self, account: Account, *, rejected: str | None = None) -> str:
        """A usable access token; raises `OAuthGrantLost` or `OAuthUnavailable`."""
        if account.state == "auth_error":
            raise OAuthGrantLost(
                account.last_error or "the account needs new OAuth2 tokens (auth_error)"
            )
        pair = open_tokens(self._secrets, account)
        if rejected is None and self._fresh(account.oauth_expires_at):
            return pair.access_token
        stale = rejected or pair.access_token
        task = self._refreshing.get(account.id)
        if task is None:
            task = asyncio.ensure_future(self._refresh_once(account.tenant_id, account.id, stale))
            self._refreshing[account.id] = task
            task.add_done_callback(lambda _: self._refreshing.pop(account.id, None))
        # Shielded: one caller cancelled must not cancel the refresh the others wait for.
        return await asyncio.shield(task)

    def _fresh(self, expiry: datetime | None) -> bool:
        # Without a known expiry the token is used until a server refuses it.
        return expiry is None or expiry - utcnow() > self._margin

    async def _refresh_once(self, tenant_id: str, account_id: uuid.UUID, stale: str) -> str:
        """Refresh under the account's lease, or wait for whoever holds it."""
        leases = Leases(self._redis, owner_id=secrets.token_hex(8), ttl_seconds=_LEASE_SECONDS)
        key = lease_key(account_id)
        deadline = time.monotonic() + self._wait_seconds
        while True:
            if await leases.acquire(key):
                try:
                    return await self._refresh_held(tenant_id, account_id, stale)
                finally:
                    await leases.release(key)
            # Someone else is refreshing: their result lands in the account row.
            while await leases.owner(key) is not None:
                replaced = await self._replaced(tenant_id, account_id, stale)
                if replaced is not None:
                    return replaced
                if time.monotonic() > deadline:
                    raise OAuthUnavailable("another process is still refreshing the token")
                await asyncio.sleep(_POLL_SECONDS)

    async def _replaced(self, tenant_id: str, account_id: uuid.UUID, stale: str) -> str | None:
        """The stored access token if it is no longer `stale`; raises if the grant was lost."""
        account = await self._load(tenant_id, account_id)
        if account.state == "auth_error":
            raise OAuthGrantLost(account.last_error or "the account needs new OAuth2 tokens")
        current = open_tokens(self._secrets, account).access_token
        return current if current != stale else None

    async def _load(self, tenant_id: str, account_id: uuid.UUID) -> Account:
        async with self._sessionmaker() as session:
            account = await OAuthAccountRepository(session, tenant_id).get(account_id)
        if account is None or account.oauth_tokens is None:
            raise OAuthGrantLost("the account no longer has OAuth2 tokens")
        return account

    async def _refresh_held(self, tenant_id: str, account_id: uuid.UUID, stale: str) -> str:
        account = await self._load(tenant_id, account_id)
        if account.state == "auth_error":
            raise OAuthGrantLost(account.last_error or "the account needs new OAuth2 tokens")
        pair = open_tokens(self._secrets, account)
        if pair.access_token != stale:
            return pair.access_token  # replaced while we waited for the lease
        if pair.refresh_token is None:
            await self._lose_grant(
                account, "the access token expired or was refused, and there is no refresh token"
            )
        app = None
        if account.oauth_app_id is not None:
            async with self._sessionmaker() as session:
                app = await OAuthAppRepository(session, tenant_id).get(account.oauth_app_id)
        if app is None:
            await self._lose_grant(account, "the account's OAuth2 app was deleted")
        client = ClientCredentials(
            token_url=app.token_url,
            client_id=app.client_id,
            client_secret=open_client_secret(self._secrets, app),
        )
        started = time.perf_counter()
        try:
            grant = await self._provider.refresh(client, refresh_token=pair.refresh_token)
        except OAuthRefused as exc:
            await self._lose_grant(
                account,
                f"OAuth2 token refresh refused: {exc.error}"
                + (f": {exc.description}" if exc.description else ""),
            )
        except OAuthUnavailable as exc:
            log.warning("oauth.refresh_failed", account_id=str(account_id), error=str(exc))
            raise
        refreshed = TokenPair(
            access_token=grant.access_token,
            # Without rotation the provider sends no new one: the old stays valid.
            refresh_token=grant.refresh_token or pair.refresh_token,
        )
        await self._store(account, stored=account.oauth_tokens, pair=refreshed, grant=grant)
        log.info(
            "oauth.refreshed",
            account_id=str(account_id),
            rotated=grant.refresh_token is not None,
            expires_in=grant.expires_in,
            seconds=round(time.perf_counter() - started, 3),
        )
        return refreshed.access_token

    async def _store(
        self, account: Account, *, stored: str | None, pair: TokenPair, grant: TokenGrant
    ) -> None:
        async with self._sessionmaker.begin() as session:
            current = await OAuthAccountRepository(session, account.tenant_id).get(
                account.id, for_update=True
            )
            # New tokens given meanwhile (PUT, a new consent) win over ours.
            if current is None or current.oauth_tokens != stored:
                return
            current.oauth_tokens = seal_tokens(
                self._secrets, tenant_id=account.tenant_id, account_id=account.id, pair=pair
            )
            current.oauth_expires_at = expires_at(grant, now=utcnow())

    async def _lose_grant(self, account: Account, reason: str) -> NoReturn:
        """Record `auth_error` with `reason` (unless new tokens arrived) and raise."""
        async with self._sessionmaker.begin() as session:
            current = await OAuthAccountRepository(session, account.tenant_id).get(account.id)
            if current is not None and current.oauth_tokens == account.oauth_tokens:
                await change_account_state(
                    session, account.tenant_id, account.id, "auth_error", reason
                )
        log.warning("oauth.grant_lost", account_id=str(account.id), reason=reason)
        raise OAuthGrantLost(reason)
