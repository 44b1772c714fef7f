"""Account behaviour: create, read, update and delete, with checks and events."""

from __future__ import annotations

import functools
import uuid
from datetime import timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from mailsvc.account import schemas
from mailsvc.account.control import ControlAction, publish_account_control
from mailsvc.account.credentials import imap_server, seal_password, smtp_server
from mailsvc.account.logins import AccountLogins
from mailsvc.account.oauth import OAuthLogin, oauth_columns, oauth_servers, refreshed_if_expiring
from mailsvc.account.repository import AccountRepository
from mailsvc.account.verify import ensure_hosts_allowed, verify_logins
from mailsvc.errors import ConflictError, FieldError, NotFoundError, UnprocessableError
from mailsvc.event.account_state import change_account_state
from mailsvc.event.repository import ChangeRepository
from mailsvc.jobs import enqueue_sync
from mailsvc.kit.db import after_commit, utcnow
from mailsvc.kit.ids import uuid7
from mailsvc.kit.mailserver import MailServer, Security
from mailsvc.kit.pagination import encode_cursor, read_cursor
from mailsvc.kit.resources import Resources
from mailsvc.models import Account
from mailsvc.oauth.presets import files_sent_mail
from mailsvc.oauth.secrets import TokenPair
from mailsvc.oauth.service import OAuthAppService


def to_out(account: Account) -> schemas.AccountOut:
    return schemas.AccountOut(
        id=account.id,
        email=account.email,
        display_name=account.display_name,
        auth_type=account.auth_type,  # type: ignore[arg-type]  # guarded by a check constraint
        oauth_app_id=account.oauth_app_id,
        imap=schemas.ServerOut(
            host=account.imap_host,
            port=account.imap_port,
            security=Security(account.imap_security),
            username=account.imap_username,
        ),
        smtp=schemas.ServerOut(
            host=account.smtp_host,
            port=account.smtp_port,
            security=Security(account.smtp_security),
            username=account.smtp_username,
        ),
        sync_options=schemas.SyncOptions.model_validate(account.sync_options or {}),
        send_options=schemas.SendOptions.model_validate(account.send_options or {}),
        state=account.state,  # type: ignore[arg-type]  # guarded by a check constraint
        last_error=account.last_error,
        last_error_at=account.last_error_at,
        created_at=account.created_at,
        updated_at=account.updated_at,
    )


ServerSettings = schemas.ServerIn | schemas.ServerUpdate


def _server(settings: ServerSettings, password: str) -> MailServer:
    return MailServer(
        host=settings.host,
        port=settings.port,
        security=settings.security,
        username=settings.username,
        password=password,
    )


def _both_servers(
    imap: ServerSettings | None, smtp: ServerSettings | None
) -> tuple[ServerSettings, ServerSettings]:
    """Both servers of a password account, or 422 naming the one missing."""
    missing = [name for name, server in (("imap", imap), ("smtp", smtp)) if server is None]
    if missing:
        raise UnprocessableError(
            f"{' and '.join(missing)} required (or `auth` with OAuth2 tokens)",
            code="validation_error",
            errors=[FieldError(field=f"body.{name}", message="required") for name in missing],
        )
    if imap is None or smtp is None:  # unreachable; tells the type checker
        raise AssertionError
    return imap, smtp


def _refuse_servers_with_tokens(imap: object, smtp: object) -> None:
    given = [name for name, server in (("imap", imap), ("smtp", smtp)) if server is not None]
    if given:
        raise UnprocessableError(
            "an OAuth2 account uses its app's servers: leave out imap and smtp",
            code="validation_error",
            errors=[
                FieldError(field=f"body.{name}", message="not allowed with `auth`")
                for name in given
            ],
        )


def _password(server: ServerSettings, stored: MailServer | None, purpose: str) -> str:
    if server.password is not None:
        return server.password.get_secret_value()
    if stored is None:
        raise UnprocessableError(
            f"{purpose} password required: the account has none stored",
            code="validation_error",
            errors=[FieldError(field=f"body.{purpose}.password", message="required")],
        )
    return stored.password


def _public_fields(account: Account) -> dict[str, Any]:
    """What an `account.*` change says: never a credential."""
    return {"account_id": str(account.id), "email": account.email, "state": account.state}


class AccountService:
    """Accounts of one tenant. Never commits: the caller owns the transaction."""

    def __init__(self, session: AsyncSession, tenant_id: str, resources: Resources) -> None:
        self._session = session
        self._tenant_id = tenant_id
        self._resources = resources
        self._accounts = AccountRepository(session, tenant_id)
        self._changes = ChangeRepository(session, tenant_id)

    async def get(self, account_id: uuid.UUID) -> Account:
        account = await self._accounts.get(account_id)
        if account is None:
            raise NotFoundError("account not found", code="account_not_found")
        return account

    async def page(self, *, cursor: str | None, limit: int) -> schemas.AccountPage:
        after = read_cursor(cursor, lambda position: uuid.UUID(str(position["after"])))
        rows = await self._accounts.page(after=after, limit=limit + 1)
        items = [to_out(account) for account in rows[:limit]]
        next_cursor = (
            encode_cursor({"after": str(rows[limit - 1].id)}) if len(rows) > limit else None
        )
        return schemas.AccountPage(items=items, next_cursor=next_cursor)

    async def create(self, body: schemas.AccountCreate, *, verify: bool) -> Account:
        if body.auth is not None:
            _refuse_servers_with_tokens(body.imap, body.smtp)
            login = await self.oauth_login(body.auth)
            return await self.create_oauth(
                login,
                email=body.email,
                display_name=body.display_name,
                sync_options=body.sync_options,
                send_options=body.send_options,
                verify=verify,
            )
        imap_in, smtp_in = _both_servers(body.imap, body.smtp)
        imap = _server(imap_in, _password(imap_in, None, "imap"))
        smtp = _server(smtp_in, _password(smtp_in, None, "smtp"))
        await ensure_hosts_allowed(imap, smtp, self._resources.settings)
        await self._refuse_taken(body.email)
        if verify:
            await verify_logins(imap, smtp, self._resources.settings)
        account_id = uuid7()
        return await self._add(
            account_id,
            email=body.email,
            display_name=body.display_name,
            sync_options=body.sync_options,
            send_options=body.send_options,
            columns={
                **self._server_columns("imap", imap, account_id),
                **self._server_columns("smtp", smtp, account_id),
            },
        )

    async def create_oauth(
        self,
        login: OAuthLogin,
        *,
        email: str,
        display_name: str | None,
        sync_options: schemas.SyncOptions,
        send_options: schemas.SendOptions,
        verify: bool,
    ) -> Account:
        """Register an account that logs in with OAuth2 tokens issued through `login.app`.

        Gmail and Microsoft 365 file sent mail in Sent themselves: unless the request
        says otherwise, their accounts do not append a second copy.
        """
        if "sent_copy" not in send_options.model_fields_set and files_sent_mail(login.app.provider):
            send_options = send_options.model_copy(update={"sent_copy": "provider"})
        await self._refuse_taken(email)
        login = await self._verified(login, email, verify=verify)
        account_id = uuid7()
        columns = oauth_columns(
            self._resources.secrets,
            tenant_id=self._tenant_id,
            account_id=account_id,
            login=login,
            email=email,
        )
        return await self._add(
            account_id,
            email=email,
            display_name=display_name,
            sync_options=sync_options,
            send_options=send_options,
            columns=columns,
        )

    async def _add(
        self,
        account_id: uuid.UUID,
        *,
        email: str,
        display_name: str | None,
        sync_options: schemas.SyncOptions,
        send_options: schemas.SendOptions,
        columns: dict[str, Any],
    ) -> Account:
        account = Account(
            id=account_id,
            email=email,
            display_name=display_name,
            sync_options=sync_options.model_dump(mode="json", exclude_defaults=True),
            send_options=send_options.model_dump(mode="json", exclude_defaults=True),
            state="connecting",
            state_changed_at=utcnow(),
            **columns,
        )
        await self._accounts.add(account)
        await self._session.refresh(account)
        await self._changes.append(account.id, "account.created", _public_fields(account))
        self._sync_after_commit(account.id)
        return account

    async def update(
        self, account_id: uuid.UUID, body: schemas.AccountUpdate, *, verify: bool
    ) -> Account:
        account = await self._accounts.get(account_id, for_update=True)
        if account is None:
            raise NotFoundError("account not found", code="account_not_found")
        if await self._accounts.email_taken(body.email, except_id=account.id):
            raise ConflictError("an account with this email exists", code="account_exists")
        if body.auth is not None:
            _refuse_servers_with_tokens(body.imap, body.smtp)
            login = await self.oauth_login(body.auth)
            await self.reconnect_oauth(account, login, email=body.email, verify=verify)
        elif body.imap is None and body.smtp is None and account.auth_type == "oauth2":
            if body.email != account.email:
                raise UnprocessableError(
                    "an OAuth2 account's address is its login: give new tokens in `auth` "
                    "to change it",
                    code="oauth_tokens_required",
                    errors=[FieldError(field="body.auth", message="required")],
                )
        elif body.imap is None and body.smtp is None:
            raise UnprocessableError(
                "a password account needs `imap` and `smtp` (or `auth` to switch to OAuth2)",
                code="credentials_required",
                errors=[
                    FieldError(field=f"body.{name}", message="required")
                    for name in ("imap", "smtp")
                ],
            )
        else:
            await self._update_passwords(account, body, verify=verify)
        account.email = body.email
        account.display_name = body.display_name
        account.sync_options = body.sync_options.model_dump(mode="json", exclude_defaults=True)
        account.send_options = body.send_options.model_dump(mode="json", exclude_defaults=True)
        await self._session.flush()
        await self._session.refresh(account)
        await self._changes.append(account.id, "account.updated", _public_fields(account))
        return account

    async def reconnect_oauth(
        self, account: Account, login: OAuthLogin, *, email: str, verify: bool
    ) -> None:
        """Give `account` (locked by the caller) new OAuth2 tokens; releases `auth_error`."""
        login = await self._verified(login, email, verify=verify)
        columns = oauth_columns(
            self._resources.secrets,
            tenant_id=self._tenant_id,
            account_id=account.id,
            login=login,
            email=email,
        )
        for column, value in columns.items():
            setattr(account, column, value)
        self._connection_changed(account)

    async def _update_passwords(
        self, account: Account, body: schemas.AccountUpdate, *, verify: bool
    ) -> None:
        imap_in, smtp_in = _both_servers(body.imap, body.smtp)
        stored_imap = stored_smtp = None
        if account.auth_type == "password":
            stored_imap = imap_server(self._resources.secrets, account)
            stored_smtp = smtp_server(self._resources.secrets, account)
        imap = _server(imap_in, _password(imap_in, stored_imap, "imap"))
        smtp = _server(smtp_in, _password(smtp_in, stored_smtp, "smtp"))
        await ensure_hosts_allowed(imap, smtp, self._resources.settings)
        # Passwords given again for an account parked in auth_error (fixed on the
        # server's side, say) are a request to try them: checked and released as new ones.
        retried = account.state == "auth_error" and (
            imap_in.password is not None or smtp_in.password is not None
        )
        connection_changed = imap != stored_imap or smtp != stored_smtp or retried
        if verify and connection_changed:
            await verify_logins(imap, smtp, self._resources.settings)
        for column, value in {
            **self._server_columns("imap", imap, account.id),
            **self._server_columns("smtp", smtp, account.id),
            "auth_type": "password",
            "oauth_app_id": None,
            "oauth_tokens": None,
            "oauth_expires_at": None,
        }.items():
            setattr(account, column, value)
        if connection_changed:
            self._connection_changed(account)

    def _connection_changed(self, account: Account) -> None:
        account.credentials_version += 1
        # New credentials release an account parked in auth_error.
        if account.state in ("auth_error", "connect_error"):
            account.state = "connecting"
            account.state_changed_at = utcnow()
        self._control_after_commit(account.id, "reconnect")
        self._sync_after_commit(account.id)

    async def oauth_login(self, credentials: schemas.OAuth2Credentials) -> OAuthLogin:
        """The tokens of `credentials` with their app (404 if the tenant has no such app)."""
        app = await OAuthAppService(self._session, self._tenant_id, self._resources).get(
            credentials.app_id
        )
        refresh = credentials.refresh_token
        return OAuthLogin(
            app=app,
            tokens=TokenPair(
                access_token=credentials.access_token.get_secret_value(),
                refresh_token=refresh.get_secret_value() if refresh is not None else None,
            ),
            expires_at=credentials.expires_at,
        )

    async def _verified(self, login: OAuthLogin, email: str, *, verify: bool) -> OAuthLogin:
        """`login` (refreshed if it was expiring), its servers allowed and, with `verify`,
        its IMAP and SMTP logins checked."""
        settings = self._resources.settings
        imap, smtp = oauth_servers(login, email)
        await ensure_hosts_allowed(imap, smtp, settings)
        if not verify:
            return login
        login = await refreshed_if_expiring(
            self._resources.component(AccountLogins),
            self._resources.secrets,
            login,
            margin=timedelta(seconds=settings.oauth_refresh_margin_seconds),
        )
        await verify_logins(*oauth_servers(login, email), settings)
        return login

    async def _refuse_taken(self, email: str) -> None:
        if await self._accounts.email_taken(email):
            raise ConflictError("an account with this email exists", code="account_exists")

    async def delete(self, account_id: uuid.UUID) -> None:
        """Delete the account and all its data; its connections are told to stop."""
        account = await self._accounts.get(account_id, for_update=True)
        if account is None:
            raise NotFoundError("account not found", code="account_not_found")
        await self._changes.append(account.id, "account.deleted", _public_fields(account))
        await self._accounts.delete(account.id)
        self._control_after_commit(account.id, "stop")

    async def set_enabled(self, account_id: uuid.UUID, *, enabled: bool) -> Account:
        """Disable the account (no more IMAP connections: no sync, no IDLE) or enable it
        again (it reconnects and syncs). Sending is not affected. Idempotent."""
        account = await self.get(account_id)
        if enabled and account.state == "disabled":
            await change_account_state(
                self._session, self._tenant_id, account.id, "connecting", None, operator=True
            )
            self._control_after_commit(account.id, "reconnect")
            self._sync_after_commit(account.id)
        elif not enabled and account.state != "disabled":
            await change_account_state(
                self._session, self._tenant_id, account.id, "disabled", None, operator=True
            )
            self._control_after_commit(account.id, "stop")
        await self._session.flush()
        await self._session.refresh(account)
        return account

    def _control_after_commit(self, account_id: uuid.UUID, action: ControlAction) -> None:
        """Tell the process watching the account, once the change is visible."""
        after_commit(
            self._session,
            functools.partial(
                publish_account_control,
                self._resources.redis,
                tenant_id=self._tenant_id,
                account_id=account_id,
                action=action,
            ),
        )

    def _sync_after_commit(self, account_id: uuid.UUID) -> None:
        """Start mirroring as soon as the account (or its new settings) is visible."""
        after_commit(
            self._session,
            functools.partial(
                enqueue_sync, self._resources.arq, tenant_id=self._tenant_id, account_id=account_id
            ),
        )

    def _server_columns(
        self, prefix: str, server: MailServer, account_id: uuid.UUID
    ) -> dict[str, Any]:
        return {
            f"{prefix}_host": server.host,
            f"{prefix}_port": server.port,
            f"{prefix}_security": server.security.value,
            f"{prefix}_username": server.username,
            f"{prefix}_secret": seal_password(
                self._resources.secrets,
                tenant_id=self._tenant_id,
                account_id=account_id,
                purpose="imap" if prefix == "imap" else "smtp",
                password=server.password,
            ),
        }
