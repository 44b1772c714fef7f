"""Account behaviour: create, read, update and delete, with checks and events."""

from __future__ import annotations

import functools
import uuid
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from mailsvc.account import schemas
from mailsvc.account.control import ControlAction, publish_account_control
from mailsvc.account.credentials import imap_server, seal_password, smtp_server
from mailsvc.account.repository import AccountRepository
from mailsvc.account.verify import ensure_hosts_allowed, verify_logins
from mailsvc.errors import ConflictError, NotFoundError
from mailsvc.event.repository import ChangeRepository
from mailsvc.jobs import enqueue_sync
from mailsvc.kit.db import after_commit, utcnow
from mailsvc.kit.ids import uuid7
from mailsvc.kit.mailserver import MailServer, Security
from mailsvc.kit.pagination import encode_cursor, read_cursor
from mailsvc.kit.resources import Resources
from mailsvc.models import Account


def to_out(account: Account) -> schemas.AccountOut:
    return schemas.AccountOut(
        id=account.id,
        email=account.email,
        display_name=account.display_name,
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


def _server(settings: schemas.ServerIn, password: str) -> MailServer:
    return MailServer(
        host=settings.host,
        port=settings.port,
        security=settings.security,
        username=settings.username,
        password=password,
    )


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
        imap = _server(body.imap, body.imap.password.get_secret_value())
        smtp = _server(body.smtp, body.smtp.password.get_secret_value())
        await ensure_hosts_allowed(imap, smtp, self._resources.settings)
        if await self._accounts.email_taken(body.email):
            raise ConflictError("an account with this email exists", code="account_exists")
        if verify:
            await verify_logins(imap, smtp, self._resources.settings)
        account_id = uuid7()
        account = Account(
            id=account_id,
            email=body.email,
            display_name=body.display_name,
            sync_options=body.sync_options.model_dump(mode="json", exclude_defaults=True),
            send_options=body.send_options.model_dump(mode="json", exclude_defaults=True),
            state="connecting",
            state_changed_at=utcnow(),
            **self._server_columns("imap", imap, account_id),
            **self._server_columns("smtp", smtp, account_id),
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
        imap = _server(
            body.imap,
            body.imap.password.get_secret_value()
            if body.imap.password
            else imap_server(self._resources.secrets, account).password,
        )
        smtp = _server(
            body.smtp,
            body.smtp.password.get_secret_value()
            if body.smtp.password
            else smtp_server(self._resources.secrets, account).password,
        )
        await ensure_hosts_allowed(imap, smtp, self._resources.settings)
        if await self._accounts.email_taken(body.email, except_id=account.id):
            raise ConflictError("an account with this email exists", code="account_exists")
        connection_changed = imap != imap_server(
            self._resources.secrets, account
        ) or smtp != smtp_server(self._resources.secrets, account)
        if verify and connection_changed:
            await verify_logins(imap, smtp, self._resources.settings)
        account.email = body.email
        account.display_name = body.display_name
        account.sync_options = body.sync_options.model_dump(mode="json", exclude_defaults=True)
        account.send_options = body.send_options.model_dump(mode="json", exclude_defaults=True)
        for column, value in {
            **self._server_columns("imap", imap, account.id),
            **self._server_columns("smtp", smtp, account.id),
        }.items():
            setattr(account, column, value)
        if connection_changed:
            account.credentials_version += 1
            # New credentials release an account parked in auth_error.
            if account.state in ("auth_error", "connect_error"):
                account.state = "connecting"
                account.state_changed_at = utcnow()
            self._control_after_commit(account.id, "reconnect")
            self._sync_after_commit(account.id)
        await self._session.flush()
        await self._session.refresh(account)
        await self._changes.append(account.id, "account.updated", _public_fields(account))
        return account

    async def delete(self, account_id: uuid.UUID) -> None:
        """Delete the account and all its data; its connections are told to stop."""
        account = await self._accounts.get(account_id, for_update=True)
        if account is None:
            raise NotFoundError("account not found", code="account_not_found")
        await self._changes.append(account.id, "account.deleted", _public_fields(account))
        await self._accounts.delete(account.id)
        self._control_after_commit(account.id, "stop")

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
