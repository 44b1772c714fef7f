"""Connecting a mailbox through a provider's consent screen (OAuth2 authorization code + PKCE).

    POST /api/oauth/authorize   the application asks for a consent URL; mailsvc keeps
                                a single-use `state` (tenant, app, PKCE verifier,
                                return URL) for 10 minutes (oauth/state.py)
    provider                    the user consents; the provider redirects the browser
                                to the app's `redirect_uri`: mailsvc's callback
    GET /api/oauth/callback     mailsvc takes the state, exchanges the code, learns
                                the address (id_token, else userinfo), checks IMAP and
                                SMTP with the new token, creates the account (or gives
                                the existing one of that address new tokens), and
                                redirects the browser to the application's
                                `return_url?account_id=...&state=...`

Every failure after the state was found ends on `return_url` too, with `error` (a
stable code: the provider's own such as `access_denied`, or ours) and
`error_description`; nothing is stored then. A state that is unknown, expired or
used already gets a problem+json 400: there is nowhere trustworthy to redirect to.
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from mailsvc.account import schemas
from mailsvc.account.logins import AccountLogins
from mailsvc.account.oauth import OAuthLogin
from mailsvc.account.repository import AccountRepository
from mailsvc.account.service import AccountService
from mailsvc.errors import BadRequestError, MailsvcError, NotFoundError
from mailsvc.kit.db import utcnow
from mailsvc.kit.resources import Resources
from mailsvc.mime.text import safe_server_text
from mailsvc.models import Account, OAuthApp
from mailsvc.oauth import state as states
from mailsvc.oauth.presets import authorize_parameters
from mailsvc.oauth.provider import (
    ClientCredentials,
    OAuthRefused,
    OAuthUnavailable,
    TokenGrant,
    id_token_email,
)
from mailsvc.oauth.repository import OAuthAppRepository
from mailsvc.oauth.secrets import TokenPair, open_client_secret
from mailsvc.oauth.service import OAuthAppService
from mailsvc.oauth.tokens import expires_at

log = structlog.get_logger("mailsvc.account.hosted_flow")


class FlowFailed(Exception):
    """The consent did not produce an account; `code` goes back to the application."""

    def __init__(self, code: str, description: str) -> None:
        super().__init__(description)
        self.code = code
        self.description = description


def with_query(url: str, parameters: dict[str, str]) -> str:
    """`url` with `parameters` added to its query (existing ones kept)."""
    parts = urlsplit(url)
    query = [*parse_qsl(parts.query, keep_blank_values=True), *parameters.items()]
    return urlunsplit(parts._replace(query=urlencode(query)))


class HostedFlow:
    """The two ends of a hosted consent. Never commits: the request does."""

    def __init__(self, session: AsyncSession, resources: Resources) -> None:
        self._session = session
        self._resources = resources

    async def authorize(
        self, tenant_id: str, body: schemas.OAuthAuthorizeIn
    ) -> schemas.OAuthAuthorizeOut:
        """The provider URL to send the user to, with a new single-use state."""
        app = await OAuthAppService(self._session, tenant_id, self._resources).get(body.app_id)
        if body.account_id is not None:
            account = await AccountRepository(self._session, tenant_id).get(body.account_id)
            if account is None:
                raise NotFoundError("account not found", code="account_not_found")
        state, verifier = states.new_state(), states.new_verifier()
        pending = states.PendingAuthorization(
            tenant_id=tenant_id,
            app_id=str(app.id),
            verifier=verifier,
            return_url=body.return_url,
            client_state=body.state,
            account_id=str(body.account_id) if body.account_id else None,
            options={
                "display_name": body.display_name,
                # Only what was given, so defaults stay recognisable as defaults.
                "sync_options": body.sync_options.model_dump(mode="json", exclude_unset=True),
                "send_options": body.send_options.model_dump(mode="json", exclude_unset=True),
            },
        )
        await states.remember(self._resources.redis, state, pending)
        parameters = {
            "response_type": "code",
            "client_id": app.client_id,
            "redirect_uri": app.redirect_uri,
            "scope": " ".join(app.scopes),
            "state": state,
            "code_challenge": states.challenge(verifier),
            "code_challenge_method": "S256",
            **authorize_parameters(app.provider),
        }
        if body.login_hint is not None:
            parameters["login_hint"] = body.login_hint
        return schemas.OAuthAuthorizeOut(
            authorization_url=with_query(app.authorization_url, parameters),
            expires_at=utcnow() + timedelta(seconds=states.STATE_TTL_SECONDS),
        )

    async def complete(
        self, *, state: str, code: str | None, error: str | None, error_description: str | None
    ) -> str:
        """Finish the consent; the URL to send the browser to (the application's)."""
        pending = await states.take(self._resources.redis, state)
        if pending is None:
            raise BadRequestError(
                "unknown, expired or already used OAuth2 state", code="oauth_state_invalid"
            )
        back = {"state": pending.client_state} if pending.client_state is not None else {}
        try:
            account = await self._connect(
                pending, code=code, error=error, error_description=error_description
            )
        except FlowFailed as failed:
            # Nothing of the consent may stay behind (a half-made account, say).
            await self._session.rollback()
            log.info("oauth.flow_failed", tenant_id=pending.tenant_id, error=failed.code)
            return with_query(
                pending.return_url,
                {"error": failed.code, "error_description": failed.description, **back},
            )
        log.info("oauth.flow_completed", tenant_id=pending.tenant_id, account_id=str(account.id))
        return with_query(pending.return_url, {"account_id": str(account.id), **back})

    async def _connect(
        self,
        pending: states.PendingAuthorization,
        *,
        code: str | None,
        error: str | None,
        error_description: str | None,
    ) -> Account:
        if error is not None:
            # The provider's own code (RFC 6749 §4.1.2.1), e.g. access_denied.
            description = safe_server_text(error_description or "")[:300]
            raise FlowFailed(safe_server_text(error)[:100] or "server_error", description)
        if not code:
            raise FlowFailed("invalid_request", "the provider sent neither a code nor an error")
        tenant_id = pending.tenant_id
        app = await OAuthAppRepository(self._session, tenant_id).get(pending.app_uuid)
        if app is None:
            raise FlowFailed("oauth_app_not_found", "the OAuth2 app was deleted meanwhile")
        grant = await self._exchange(app, code=code, verifier=pending.verifier)
        email = await self._address(app, grant)
        login = OAuthLogin(
            app=app,
            tokens=TokenPair(access_token=grant.access_token, refresh_token=grant.refresh_token),
            expires_at=expires_at(grant, now=utcnow()),
        )
        service = AccountService(self._session, tenant_id, self._resources)
        accounts = AccountRepository(self._session, tenant_id)
        try:
            if pending.account_id is not None:
                account = await accounts.get(uuid.UUID(pending.account_id), for_update=True)
                if account is None:
                    raise FlowFailed("account_not_found", "the account was deleted meanwhile")
                if account.email.lower() != email.lower():
                    raise FlowFailed(
                        "account_mismatch",
                        f"consent was given for {email}, not for the account's address",
                    )
            else:
                account = await accounts.by_email(email, for_update=True)
            if account is not None:
                await service.reconnect_oauth(account, login, email=account.email, verify=True)
                return account
            options = pending.options
            return await service.create_oauth(
                login,
                email=email,
                display_name=options.get("display_name"),  # type: ignore[arg-type]
                sync_options=schemas.SyncOptions.model_validate(options["sync_options"]),
                send_options=schemas.SendOptions.model_validate(options["send_options"]),
                verify=True,
            )
        except MailsvcError as exc:
            raise FlowFailed(exc.code, exc.detail) from exc

    async def _exchange(self, app: OAuthApp, *, code: str, verifier: str) -> TokenGrant:
        client = ClientCredentials(
            token_url=app.token_url,
            client_id=app.client_id,
            client_secret=open_client_secret(self._resources.secrets, app),
        )
        provider = self._resources.component(AccountLogins).provider
        try:
            grant = await provider.exchange_code(
                client, code=code, verifier=verifier, redirect_uri=app.redirect_uri
            )
        except OAuthRefused as exc:
            raise FlowFailed("token_exchange_refused", str(exc)) from exc
        except OAuthUnavailable as exc:
            raise FlowFailed("provider_unavailable", str(exc)) from exc
        if grant.refresh_token is None:
            # Without one the account would stop within the hour, silently.
            raise FlowFailed(
                "no_refresh_token",
                "the provider issued no refresh token (check the app's offline access "
                "scope or consent settings)",
            )
        return grant

    async def _address(self, app: OAuthApp, grant: TokenGrant) -> str:
        email = id_token_email(grant.id_token) if grant.id_token else None
        if email is None and app.userinfo_url is not None:
            provider = self._resources.component(AccountLogins).provider
            try:
                email = await provider.userinfo_email(app.userinfo_url, grant.access_token)
            except OAuthUnavailable as exc:
                raise FlowFailed("provider_unavailable", str(exc)) from exc
        if email is None:
            raise FlowFailed(
                "email_unknown",
                "the provider did not say which address was consented (request the "
                "`openid email` scopes)",
            )
        try:
            return schemas.AccountCreate.model_validate({"email": email, "auth": None}).email
        except ValueError as exc:
            raise FlowFailed("email_unknown", "the provider's address is not valid") from exc
