"""Draft test helpers: draft bodies, the account's send options, the Drafts mailbox."""

from __future__ import annotations

import imaplib
from typing import Any

import httpx

from tests.fixtures import imap_client
from tests.fixtures.dovecot import DovecotServer
from tests.fixtures.mail import SyncTarget

Headers = dict[str, str]


def draft_body(target: SyncTarget, **fields: Any) -> dict[str, Any]:
    return {"account_id": str(target.account_id), **fields}


async def create_draft(
    client: httpx.AsyncClient, auth: Headers, target: SyncTarget, **fields: Any
) -> dict[str, Any]:
    response = await client.post("/api/compose", json=draft_body(target, **fields), headers=auth)
    assert response.status_code == 201, response.text
    draft: dict[str, Any] = response.json()
    return draft


def drafts_mailbox(dovecot: DovecotServer, target: SyncTarget) -> list[tuple[set[str], bytes]]:
    """(flags, header block) of each message in Dovecot's Drafts, by a separate client."""
    found: list[tuple[set[str], bytes]] = []
    with imap_client.imap_session(dovecot, target.user) as imap:
        status, _ = imap.select('"Drafts"', readonly=True)
        assert status == "OK"
        status, data = imap.uid("FETCH", "1:*", "(FLAGS BODY.PEEK[HEADER])")
        assert status == "OK"
        for part in data:
            if isinstance(part, tuple):
                flags = {f.decode() for f in imaplib.ParseFlags(part[0])}
                found.append((flags - {"\\Recent"}, part[1]))
    return found
