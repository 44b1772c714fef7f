"""The accounts page (live state and first-mirror progress) and its actions."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Request
from pydantic import SecretStr, ValidationError
from starlette.datastructures import FormData
from starlette.responses import Response

from mailsvc.account import schemas as account_schemas
from mailsvc.account.service import AccountService, to_out
from mailsvc.auth.scopes import Scope
from mailsvc.console.dependencies import Action, Operator, acting, viewing
from mailsvc.console.rendering import redirect, render
from mailsvc.console.routing import ConsoleRoute
from mailsvc.errors import FieldError, UnprocessableError
from mailsvc.kit.http import ReadsDep, ResourcesDep, SessionDep
from mailsvc.kit.pagination import CursorQuery
from mailsvc.kit.resources import Resources
from mailsvc.sync.schemas import SyncStatus
from mailsvc.sync.service import SyncProgress, SyncService

router = APIRouter(route_class=ConsoleRoute)

Viewer = Annotated[Operator, Depends(viewing(Scope.ACCOUNTS_READ))]
Writer = Annotated[Action, Depends(acting(Scope.ACCOUNTS_WRITE))]

PAGE_SIZE = 50
# How often the accounts table refreshes itself (the template's hx-trigger).
REFRESH_SECONDS = 2


@dataclass(frozen=True, slots=True)
class AccountRow:
    """One account as the table shows it."""

    account: account_schemas.AccountOut
    status: SyncStatus

    @property
    def last_synced_at(self) -> datetime | None:
        synced = [m.last_synced_at for m in self.status.mailboxes if m.last_synced_at]
        return max(synced, default=None)

    @property
    def mirror_complete(self) -> bool:
        status = self.status
        return status.messages_synced >= status.messages_total and (
            status.messages_indexed >= status.messages_synced
        )


async def _accounts(
    request: Request,
    operator: Operator,
    session: SessionDep,
    reads: ReadsDep,
    resources: Resources,
    cursor: str | None,
    *,
    table_only: bool,
) -> Response:
    """A page of accounts with their progress (one statement and one Redis round trip
    for the whole page), as the page or as its table body alone."""
    page = await AccountService(session, operator.tenant_id, resources).page(
        cursor=cursor, limit=PAGE_SIZE
    )
    progress = SyncProgress(reads, operator.tenant_id, redis=resources.redis)
    statuses = await progress.statuses([account.id for account in page.items])
    status_of = {status.account_id: status for status in statuses}
    rows = [
        AccountRow(account=account, status=status_of[account.id])
        for account in page.items
        # An account deleted between the two reads is left out.
        if account.id in status_of
    ]
    return render(
        request,
        "account_rows.html" if table_only else "accounts.html",
        {
            **operator.page_context("accounts"),
            "rows": rows,
            "cursor": cursor,
            "next_cursor": page.next_cursor,
            "refresh_seconds": REFRESH_SECONDS,
        },
        whole_page=not table_only,
    )


@router.get("/console/{tenant}/accounts")
async def accounts_page(
    request: Request,
    operator: Viewer,
    session: SessionDep,
    reads: ReadsDep,
    resources: ResourcesDep,
    cursor: CursorQuery = None,
) -> Response:
    """Every account: state, last sync, first-mirror progress, actions."""
    return await _accounts(request, operator, session, reads, resources, cursor, table_only=False)


@router.get("/console/{tenant}/accounts/rows")
async def account_rows(
    request: Request,
    operator: Viewer,
    session: SessionDep,
    reads: ReadsDep,
    resources: ResourcesDep,
    cursor: CursorQuery = None,
) -> Response:
    """The table body alone, for the page's periodic refresh."""
    return await _accounts(request, operator, session, reads, resources, cursor, table_only=True)


@router.post("/console/{tenant}/accounts/{account_id}/resync")
async def resync_account(
    request: Request,
    account_id: uuid.UUID,
    action: Writer,
    session: SessionDep,
    resources: ResourcesDep,
) -> Response:
    """Queue a sync of the account now."""
    await SyncService(session, action.operator.tenant_id, resources).request(account_id, full=False)
    return redirect(
        request, f"/console/{action.operator.tenant_id}/accounts", notice="Sync queued."
    )


@router.post("/console/{tenant}/accounts/{account_id}/credentials")
async def update_credentials(
    request: Request,
    account_id: uuid.UUID,
    action: Writer,
    session: SessionDep,
    resources: ResourcesDep,
) -> Response:
    """New passwords for a password account; the logins are checked before saving."""
    service = AccountService(session, action.operator.tenant_id, resources)
    account = to_out(await service.get(account_id))
    update = _password_update(account, action.form)
    await service.update(account_id, update, verify=True)
    return redirect(
        request,
        f"/console/{action.operator.tenant_id}/accounts",
        notice=f"New password saved for {account.email}; it reconnects now.",
    )


@router.post("/console/{tenant}/accounts/{account_id}/{switch}")
async def switch_account(
    request: Request,
    account_id: uuid.UUID,
    switch: Literal["disable", "enable"],
    action: Writer,
    session: SessionDep,
    resources: ResourcesDep,
) -> Response:
    """Disable the account (no sync, no IDLE), or connect a disabled one again."""
    service = AccountService(session, action.operator.tenant_id, resources)
    account = await service.set_enabled(account_id, enabled=switch == "enable")
    return redirect(
        request,
        f"/console/{action.operator.tenant_id}/accounts",
        notice=f"{account.email} {switch}d.",
    )


def _password_update(
    account: account_schemas.AccountOut, form: FormData
) -> account_schemas.AccountUpdate:
    """The account's settings as they are, with the new password(s) from the form.

    The SMTP password defaults to the IMAP one: most providers use one password for both.
    """
    if account.auth_type != "password":
        raise UnprocessableError(
            "an OAuth2 account gets new tokens through its provider's consent, not a password",
            code="oauth_tokens_required",
        )
    imap_password = form.get("password")
    smtp_password = form.get("smtp_password") or imap_password
    if not isinstance(imap_password, str) or not imap_password:
        raise UnprocessableError(
            "enter the new password",
            code="credentials_required",
            errors=[FieldError(field="password", message="required")],
        )
    assert isinstance(smtp_password, str)
    try:
        return _with_passwords(account, imap_password, smtp_password)
    except ValidationError as exc:
        raise UnprocessableError(
            "the password is not valid: " + "; ".join(str(e["msg"]) for e in exc.errors()),
            code="validation_error",
            errors=[FieldError(field="password", message="invalid")],
        ) from exc


def _with_passwords(
    account: account_schemas.AccountOut, imap_password: str, smtp_password: str
) -> account_schemas.AccountUpdate:
    def server(current: account_schemas.ServerOut, password: str) -> account_schemas.ServerUpdate:
        return account_schemas.ServerUpdate(
            host=current.host,
            port=current.port,
            security=current.security,
            username=current.username,
            password=SecretStr(password),
        )

    return account_schemas.AccountUpdate(
        email=account.email,
        display_name=account.display_name,
        imap=server(account.imap, imap_password),
        smtp=server(account.smtp, smtp_password),
        sync_options=account.sync_options,
        send_options=account.send_options,
    )
