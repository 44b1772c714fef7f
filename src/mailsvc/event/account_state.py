"""An account's connection state, changed with its `account.state_changed` event.

With the change log rather than the account domain, because the sync engine and
the OAuth2 token refresher (a layer below accounts) both record it.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from mailsvc.event.repository import ChangeRepository
from mailsvc.kit.db import utcnow


async def change_account_state(
    session: AsyncSession,
    tenant_id: str,
    account_id: uuid.UUID,
    state: str,
    error: str | None,
    *,
    operator: bool = False,
) -> None:
    """Set the state (and the error, when given) in the caller's transaction.

    Nothing is written, and no event raised, when the account already is in that
    state with that error, so a watcher retrying does not flood the change feed.
    Only an operator (`operator=True`: disabling or enabling through the API) moves
    an account into or out of `disabled`; a sync or a token refresh that finishes
    after the account was disabled leaves it disabled.
    """
    changes = ChangeRepository(session, tenant_id)
    account = await changes.locked_account(account_id)
    if account is None:
        return
    if not operator and "disabled" in (account.state, state):
        return
    if account.state == state and (error is None or account.last_error == error):
        return
    previous = account.state
    account.state = state
    account.state_changed_at = utcnow()
    if error is not None:
        account.last_error = error
        account.last_error_at = utcnow()
    payload: dict[str, Any] = {
        "account_id": str(account_id),
        "state": state,
        "previous_state": previous,
    }
    if error is not None:
        payload["error"] = error
    await changes.append_many(account_id, [("account.state_changed", payload)])
