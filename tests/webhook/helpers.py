"""Making events with real actions, and reading what became of their deliveries."""

from __future__ import annotations

import asyncio
import secrets
import uuid
from typing import Any

import httpx

from tests.fixtures import imap_client
from tests.fixtures.dovecot import DovecotServer, TestMailUser
from tests.fixtures.mail import register_account
from tests.fixtures.smtp_server import SmtpRelay
from tests.sync.messages import make_message

Headers = dict[str, str]


async def mail_account(
    client: httpx.AsyncClient,
    auth: Headers,
    dovecot: DovecotServer,
    relay: SmtpRelay,
    *,
    messages: int,
) -> tuple[uuid.UUID, TestMailUser]:
    """A registered account whose INBOX holds `messages` messages, each of which its
    first sync announces (`message.created`)."""
    user = dovecot.add_user(f"hook-{secrets.token_hex(5)}", secrets.token_urlsafe(10))
    await append(dovecot, user, range(messages))
    account_id = await register_account(
        client, auth, dovecot, relay, user, sync_options={"events_for_existing": True}
    )
    return account_id, user


async def append(dovecot: DovecotServer, user: TestMailUser, indexes: range) -> None:
    raw = [make_message(index)[1] for index in indexes]
    await asyncio.to_thread(imap_client.append, dovecot, user, "INBOX", raw)


async def deliveries(
    client: httpx.AsyncClient, auth: Headers, webhook_id: str
) -> list[dict[str, Any]]:
    """Every delivery of the webhook, newest first, through the API's pages."""
    found: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        params: dict[str, Any] = {"limit": 200, **({"cursor": cursor} if cursor else {})}
        response = await client.get(
            f"/api/webhooks/{webhook_id}/deliveries", params=params, headers=auth
        )
        assert response.status_code == 200, response.text
        page = response.json()
        found += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            return found
