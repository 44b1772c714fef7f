"""OAuth2 tokens becoming an account's login: the servers, the columns, a first refresh."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from mailsvc.account.logins import AccountLogins
from mailsvc.errors import BadGatewayError, UnprocessableError
from mailsvc.kit.crypto import SecretBox
from mailsvc.kit.db import utcnow
from mailsvc.kit.mailserver import MailServer, Security
from mailsvc.models import OAuthApp
from mailsvc.oauth.provider import ClientCredentials, OAuthRefused, OAuthUnavailable
from mailsvc.oauth.secrets import TokenPair, open_client_secret, seal_tokens
from mailsvc.oauth.tokens import expires_at


@dataclass(frozen=True, slots=True)
class OAuthLogin:
    """An OAuth2 app and tokens for one address: what an OAuth2 account logs in with."""

    app: OAuthApp
    tokens: TokenPair
    expires_at: datetime | None


def oauth_servers(login: OAuthLogin, email: str) -> tuple[MailServer, MailServer]:
    """The app's IMAP and SMTP servers, logging in as `email` with the access token."""
    app = login.app
    return tuple(  # type: ignore[return-value]
        MailServer(
            host=getattr(app, f"{kind}_host"),
            port=getattr(app, f"{kind}_port"),
            security=Security(getattr(app, f"{kind}_security")),
            username=email,
            password="",
            access_token=login.tokens.access_token,
        )
        for kind in ("imap", "smtp")
    )


def oauth_columns(
    box: SecretBox, *, tenant_id: str, account_id: uuid.UUID, login: OAuthLogin, email: str
) -> dict[str, Any]:
    """An OAuth2 account's login columns (passwords cleared)."""
    columns: dict[str, Any] = {
        "auth_type": "oauth2",
        "oauth_app_id": login.app.id,
        "oauth_tokens": seal_tokens(
            box, tenant_id=tenant_id, account_id=account_id, pair=login.tokens
        ),
        "oauth_expires_at": login.expires_at,
    }
    for kind, server in zip(("imap", "smtp"), oauth_servers(login, email), strict=True):
        columns |= {
            f"{kind}_host": server.host,
            f"{kind}_port": server.port,
            f"{kind}_security": server.security.value,
            f"{kind}_username": email,
            f"{kind}_secret": None,
        }
    return columns


async def refreshed_if_expiring(
    logins: AccountLogins, box: SecretBox, login: OAuthLogin, *, margin: timedelta
) -> OAuthLogin:
    """`login`, refreshed first when its access token is (about to be) expired.

    Tokens handed in by an application may be minutes old; checking the logins with
    an expired token would refuse an account that works.
    """
    if login.expires_at is None or login.expires_at - utcnow() > margin:
        return login
    if login.tokens.refresh_token is None:
        raise UnprocessableError(
            "the access token has expired and there is no refresh token",
            code="oauth_token_expired",
        )
    client = ClientCredentials(
        token_url=login.app.token_url,
        client_id=login.app.client_id,
        client_secret=open_client_secret(box, login.app),
    )
    try:
        grant = await logins.provider.refresh(client, refresh_token=login.tokens.refresh_token)
    except OAuthRefused as exc:
        raise UnprocessableError(str(exc), code="oauth_grant_refused") from exc
    except OAuthUnavailable as exc:
        raise BadGatewayError(str(exc), code="oauth_provider_unavailable") from exc
    tokens = TokenPair(
        access_token=grant.access_token,
        refresh_token=grant.refresh_token or login.tokens.refresh_token,
    )
    return replace(login, tokens=tokens, expires_at=expires_at(grant, now=utcnow()))
