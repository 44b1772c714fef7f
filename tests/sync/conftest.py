from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
from fastapi import FastAPI

from mailsvc.config import Settings
from mailsvc.state import AppState
from mailsvc.sync.engine import SyncEngine
from mailsvc.sync.parser import ParserPool
from tests.fixtures.app import account_body
from tests.fixtures.dovecot import DovecotServer, TestMailUser
from tests.fixtures.smtp_server import SmtpRelay


@pytest.fixture(scope="session")
def parser_pool() -> Iterator[ParserPool]:
    pool = ParserPool(processes=2)
    yield pool
    pool.close()


@pytest.fixture
def engine(app: FastAPI, settings: Settings, parser_pool: ParserPool) -> SyncEngine:
    state: AppState = app.state.mailsvc
    return SyncEngine(
        sessionmaker=state.sessionmaker,
        secrets=state.secrets,
        settings=settings,
        parser=parser_pool,
    )


@dataclass(frozen=True)
class SyncTarget:
    tenant_id: str
    account_id: uuid.UUID
    user: TestMailUser


@pytest.fixture
async def target(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    tenant_id: str,
    dovecot: DovecotServer,
    smtp_relay: SmtpRelay,
    mail_user: TestMailUser,
) -> SyncTarget:
    """A registered account for `mail_user` (not synced yet)."""
    response = await client.post(
        "/api/accounts",
        json=account_body(dovecot, smtp_relay, mail_user),
        headers=auth,
        params={"verify": "false"},
    )
    assert response.status_code == 201, response.text
    return SyncTarget(tenant_id, uuid.UUID(response.json()["id"]), mail_user)
