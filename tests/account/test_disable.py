"""`POST /api/accounts/{id}/disable` and `/enable`: a disabled account is left alone."""

from __future__ import annotations

import httpx
import pytest

from mailsvc.event.account_state import change_account_state
from mailsvc.sync.engine import AccountGoneError, SyncEngine
from tests.fixtures.app import TokenFactory
from tests.fixtures.mail import SyncTarget


async def _state(client: httpx.AsyncClient, auth: dict[str, str], target: SyncTarget) -> str:
    response = await client.get(f"/api/accounts/{target.account_id}", headers=auth)
    return str(response.json()["state"])


async def _state_events(
    client: httpx.AsyncClient, auth: dict[str, str], target: SyncTarget
) -> list[tuple[str, str]]:
    feed = await client.get(
        "/api/changes",
        params={
            "since": "0",
            "account_id": str(target.account_id),
            "types": "account.state_changed",
        },
        headers=auth,
    )
    return [(e["data"]["previous_state"], e["data"]["state"]) for e in feed.json()["events"]]


async def test_a_disabled_account_is_not_synced_until_enabled(
    client: httpx.AsyncClient, auth: dict[str, str], target: SyncTarget, engine: SyncEngine
) -> None:
    await engine.sync_account(target.tenant_id, target.account_id)
    assert await _state(client, auth, target) == "connected"

    disabled = await client.post(f"/api/accounts/{target.account_id}/disable", headers=auth)
    assert disabled.status_code == 200
    assert disabled.json()["state"] == "disabled"
    assert await _state(client, auth, target) == "disabled", await _state_events(
        client, auth, target
    )
    # A sync that was already due finds it disabled, and leaves it so.
    with pytest.raises(AccountGoneError):
        await engine.sync_account(target.tenant_id, target.account_id)
    assert await _state(client, auth, target) == "disabled", await _state_events(
        client, auth, target
    )
    # Disabling twice changes nothing (no second event).
    again = await client.post(f"/api/accounts/{target.account_id}/disable", headers=auth)
    assert again.json()["state"] == "disabled"

    enabled = await client.post(f"/api/accounts/{target.account_id}/enable", headers=auth)
    assert enabled.json()["state"] == "connecting"
    await engine.sync_account(target.tenant_id, target.account_id)
    assert await _state(client, auth, target) == "connected"
    assert await _state_events(client, auth, target) == [
        ("connecting", "connected"),
        ("connected", "disabled"),
        ("disabled", "connecting"),
        ("connecting", "connected"),
    ]


async def test_the_engine_cannot_move_an_account_out_of_disabled(
    client: httpx.AsyncClient, auth: dict[str, str], target: SyncTarget, engine: SyncEngine
) -> None:
    await client.post(f"/api/accounts/{target.account_id}/disable", headers=auth)
    # What a sync that connected just before the disable records afterwards (the
    # engine's own call), and what a token refresher records on a refused grant.
    for state, error in (("connected", None), ("auth_error", "invalid_grant")):
        async with engine.sessionmaker.begin() as session:
            await change_account_state(session, target.tenant_id, target.account_id, state, error)
    assert await _state(client, auth, target) == "disabled", await _state_events(
        client, auth, target
    )


async def test_disable_needs_the_write_scope_and_the_tenants_account(
    client: httpx.AsyncClient, target: SyncTarget, make_token: TokenFactory
) -> None:
    token = make_token(target.tenant_id, scopes=["accounts:read"])
    read_only = {"Authorization": f"Bearer {token}"}
    refused = await client.post(f"/api/accounts/{target.account_id}/disable", headers=read_only)
    assert refused.status_code == 403
    other = {"Authorization": f"Bearer {make_token('another-tenant')}"}
    missing = await client.post(f"/api/accounts/{target.account_id}/enable", headers=other)
    assert missing.status_code == 404
