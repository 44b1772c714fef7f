"""ApiKeyRevocations, the per-process cache of API key statuses, on the real database
and a clock of the test's."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import cast

import pytest
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from mailsvc.auth import revocations as revocations_module
from mailsvc.auth.revocations import ApiKeyRevocations
from mailsvc.auth.service import create_api_key, revoke_api_key
from mailsvc.runtime import Runtime
from tests.fixtures.app import remember_secret

LIFETIME = 30.0


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def runtime(app: FastAPI) -> Runtime:
    state: Runtime = app.state.mailsvc
    return state


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def revocations(runtime: Runtime, clock: Clock) -> ApiKeyRevocations:
    return ApiKeyRevocations(runtime.read_sessionmaker, lifetime_seconds=LIFETIME, clock=clock)


async def _new_key(runtime: Runtime, tenant_id: str) -> uuid.UUID:
    async with runtime.sessionmaker.begin() as session:
        created = await create_api_key(session, name="t", tenants=[tenant_id])
    remember_secret(created.key)
    return created.row.id


async def _revoke(runtime: Runtime, key_id: uuid.UUID) -> None:
    async with runtime.sessionmaker.begin() as session:
        await revoke_api_key(session, key_id)


async def test_an_active_key_is_trusted_for_the_lifetime_then_read_again(
    runtime: Runtime, revocations: ApiKeyRevocations, clock: Clock, tenant_id: str
) -> None:
    key_id = await _new_key(runtime, tenant_id)
    key = str(key_id)
    assert revocations.cached(key) is None
    assert await revocations.is_revoked(key) is False
    await _revoke(runtime, key_id)
    # Not read again while fresh: the hot path is this lookup.
    clock.now += LIFETIME - 0.1
    assert revocations.cached(key) is False
    clock.now += 0.1
    assert revocations.cached(key) is None
    assert await revocations.is_revoked(key) is True
    # Revoked is final: never read again.
    clock.now += 100 * LIFETIME
    assert revocations.cached(key) is True


async def test_ids_of_no_key_are_revoked(revocations: ApiKeyRevocations) -> None:
    for key in (str(uuid.uuid4()), "not-a-uuid"):
        assert await revocations.is_revoked(key) is True
        assert revocations.cached(key) is True


async def test_forget_makes_the_next_request_read_the_key(
    runtime: Runtime, revocations: ApiKeyRevocations, tenant_id: str
) -> None:
    key_id = await _new_key(runtime, tenant_id)
    assert await revocations.is_revoked(str(key_id)) is False
    await _revoke(runtime, key_id)
    revocations.forget(key_id)
    assert revocations.cached(str(key_id)) is None
    assert await revocations.is_revoked(str(key_id)) is True


async def test_a_read_begun_before_a_forget_is_not_kept(
    runtime: Runtime, clock: Clock, tenant_id: str
) -> None:
    key_id = await _new_key(runtime, tenant_id)
    read = asyncio.Event()
    release = asyncio.Event()

    @asynccontextmanager
    async def gated() -> AsyncIterator[AsyncSession]:
        async with runtime.read_sessionmaker() as session:
            yield session
        read.set()
        await release.wait()

    revocations = ApiKeyRevocations(
        cast(async_sessionmaker[AsyncSession], gated), lifetime_seconds=LIFETIME, clock=clock
    )
    loading = asyncio.create_task(revocations.load(str(key_id)))
    await read.wait()  # it read the key as active; now the revoke commits and forgets
    await _revoke(runtime, key_id)
    revocations.forget(key_id)
    release.set()
    assert await loading is False  # its own request raced the revoke
    assert revocations.cached(str(key_id)) is None


async def test_the_cache_is_bounded(
    revocations: ApiKeyRevocations, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(revocations_module, "_MAX_ENTRIES", 2)
    for key in ("a", "b", "c"):
        await revocations.is_revoked(key)
    assert [revocations.cached(key) for key in ("a", "b", "c")] == [None, True, True]
