"""Logging in to an account's servers: with its password, or with a fresh OAuth2 token.

Every IMAP and SMTP connection of an account starts here. For an OAuth2 account the
access token comes from `OAuthTokens` (refreshed ahead of expiry), and a login the
server refuses is retried once with a newly refreshed token: a token revoked or
expired early is replaced without the sync or send failing. Errors come out as the
adapters' own, so callers handle both kinds of account alike:

    OAuthGrantLost    -> ImapAuthError / SmtpAuthError   (account is in auth_error)
    OAuthUnavailable  -> ImapConnectError / SmtpConnectError   (try again later)
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Literal

import redis.asyncio as aioredis
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from mailsvc.account.credentials import mail_server
from mailsvc.config import Settings
from mailsvc.imap.connection import ImapConnection, connect_imap
from mailsvc.imap.errors import ImapAuthError, ImapConnectError
from mailsvc.kit.crypto import SecretBox
from mailsvc.kit.mailserver import MailServer, Security, tls_context
from mailsvc.models import Account
from mailsvc.oauth.provider import OAuthUnavailable, ProviderClient
from mailsvc.oauth.tokens import OAuthGrantLost, OAuthTokens
from mailsvc.smtp.client import SmtpAuthError, SmtpConnectError

Purpose = Literal["imap", "smtp"]


def _auth_error(purpose: Purpose, message: str) -> Exception:
    return ImapAuthError(message) if purpose == "imap" else SmtpAuthError(message)


def _connect_error(purpose: Purpose, message: str) -> Exception:
    return ImapConnectError(message) if purpose == "imap" else SmtpConnectError(message)


class AccountLogins:
    """The servers and logins of accounts, for one process."""

    def __init__(
        self,
        *,
        sessionmaker: async_sessionmaker[AsyncSession],
        redis: aioredis.Redis,
        secrets: SecretBox,
        settings: Settings,
    ) -> None:
        self._secrets = secrets
        self._settings = settings
        self.provider = ProviderClient(timeout_seconds=settings.oauth_http_timeout_seconds)
        self.tokens = OAuthTokens(
            sessionmaker=sessionmaker,
            redis=redis,
            secrets=secrets,
            settings=settings,
            provider=self.provider,
        )

    async def aclose(self) -> None:
        await self.provider.aclose()

    async def server(
        self, account: Account, purpose: Purpose, *, rejected: MailServer | None = None
    ) -> MailServer:
        """The account's `purpose` server with what to log in with.

        `rejected`: the server refused this login; for an OAuth2 account the token
        is then refreshed (once, whoever else asks at the same time).
        """
        if account.auth_type != "oauth2":
            return mail_server(self._secrets, account, purpose)
        try:
            token = await self.tokens.access_token(
                account, rejected=rejected.access_token if rejected is not None else None
            )
        except OAuthGrantLost as exc:
            raise _auth_error(purpose, str(exc)) from exc
        except OAuthUnavailable as exc:
            raise _connect_error(purpose, str(exc)) from exc
        return MailServer(
            host=getattr(account, f"{purpose}_host"),
            port=getattr(account, f"{purpose}_port"),
            security=Security(getattr(account, f"{purpose}_security")),
            username=getattr(account, f"{purpose}_username"),
            password="",
            access_token=token,
        )

    async def connect_imap(self, account: Account) -> ImapConnection:
        """A logged-in IMAP connection (see the module doc for the retry)."""
        server = await self.server(account, "imap")
        try:
            return await self._connect(server)
        except ImapAuthError:
            if server.access_token is None:
                raise
        return await self._connect(await self.server(account, "imap", rejected=server))

    @asynccontextmanager
    async def imap_session(self, account: Account) -> AsyncIterator[ImapConnection]:
        """A logged-in IMAP connection for one piece of work, logged out when it ends."""
        connection = await self.connect_imap(account)
        try:
            yield connection
        finally:
            await connection.logout()

    async def _connect(self, server: MailServer) -> ImapConnection:
        return await connect_imap(
            server,
            io_timeout=self._settings.mail_connect_timeout_seconds,
            # Cached per CA file; the runtime reads it off the event loop at start-up.
            tls=tls_context(self._settings.mail_tls_ca_file),
        )
