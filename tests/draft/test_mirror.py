"""The copy of a draft in Dovecot's Drafts mailbox, checked with a separate IMAP client."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from mailsvc.sync.engine import SyncEngine
from tests.draft.conftest import Headers, create_draft, draft_body, drafts_mailbox
from tests.fixtures.dovecot import DovecotServer
from tests.fixtures.mail import SyncTarget, set_account
from tests.fixtures.net import free_port
from tests.fixtures.smtp_server import SmtpRelay


async def _copies(dovecot: DovecotServer, target: SyncTarget) -> list[tuple[set[str], bytes]]:
    return await asyncio.to_thread(drafts_mailbox, dovecot, target)


async def _save(
    client: httpx.AsyncClient, auth: Headers, target: SyncTarget, draft_id: str, **fields: object
) -> None:
    response = await client.post(
        "/api/compose/draft", json=draft_body(target, id=draft_id, **fields), headers=auth
    )
    assert response.status_code == 200, response.text


async def test_one_copy_follows_the_draft_and_goes_with_it(
    client: httpx.AsyncClient,
    auth: Headers,
    target: SyncTarget,
    dovecot: DovecotServer,
    smtp_relay: SmtpRelay,
) -> None:
    await set_account(client, auth, target, dovecot, smtp_relay, send_options={"save_drafts": True})
    draft = await create_draft(client, auth, target, subject="Not yet")
    assert await _copies(dovecot, target) == []  # no recipient yet: nothing to build

    to = [{"name": "Zoë", "address": "zoe@example.test"}]
    await _save(client, auth, target, draft["id"], to=to, subject="Version one")
    copies = await _copies(dovecot, target)
    assert len(copies) == 1
    assert b"Subject: Version one" in copies[0][1]

    await _save(
        client, auth, target, draft["id"], to=to, bcc=[{"address": "boss@example.test"}],
        subject="Version two", headers={"X-Campaign": "spring"},
    )  # fmt: skip
    copies = await _copies(dovecot, target)
    assert len(copies) == 1
    flags, header = copies[0]
    assert flags == {"\\Draft", "\\Seen"}
    assert b"Subject: Version two" in header
    assert b"X-Campaign: spring" in header
    assert b"zoe@example.test" in header
    assert b"boss@example.test" not in header  # Bcc never goes into a header

    # The copy's UID is stored without making the draft a new version.
    got = (await client.get(f"/api/drafts/{draft['id']}", headers=auth)).json()
    upload = await client.post(
        f"/api/drafts/{draft['id']}/attachments",
        files={"file": ("notes.txt", b"some notes", "text/plain")},
        headers=auth,
    )
    assert upload.status_code == 201, upload.text
    after = (await client.get(f"/api/drafts/{draft['id']}", headers=auth)).json()
    assert after["updated_at"] != got["updated_at"]
    copies = await _copies(dovecot, target)
    assert len(copies) == 1
    assert b"multipart/mixed" in copies[0][1]

    # Losing every recipient makes it unbuildable again: the stale copy goes.
    await _save(client, auth, target, draft["id"], subject="Back to nothing")
    assert await _copies(dovecot, target) == []
    await _save(client, auth, target, draft["id"], to=to, subject="Again")
    assert len(await _copies(dovecot, target)) == 1

    deleted = await client.delete(f"/api/drafts/{draft['id']}", headers=auth)
    assert deleted.status_code == 204
    assert await _copies(dovecot, target) == []


async def test_a_synced_account_uses_its_known_drafts_mailbox(
    client: httpx.AsyncClient,
    auth: Headers,
    target: SyncTarget,
    engine: SyncEngine,
    dovecot: DovecotServer,
    smtp_relay: SmtpRelay,
) -> None:
    await engine.sync_account(target.tenant_id, target.account_id)
    await set_account(client, auth, target, dovecot, smtp_relay, send_options={"save_drafts": True})
    to = [{"address": "zoe@example.test"}]
    draft = await create_draft(client, auth, target, to=to, subject="One")
    await _save(client, auth, target, draft["id"], to=to, subject="Two")
    copies = await _copies(dovecot, target)
    assert len(copies) == 1
    assert b"Subject: Two" in copies[0][1]
    assert (await client.delete(f"/api/drafts/{draft['id']}", headers=auth)).status_code == 204
    assert await _copies(dovecot, target) == []


async def test_without_save_drafts_nothing_goes_to_the_server(
    client: httpx.AsyncClient, auth: Headers, target: SyncTarget, dovecot: DovecotServer
) -> None:
    draft = await create_draft(client, auth, target, to=[{"address": "zoe@example.test"}])
    await _save(client, auth, target, draft["id"], to=[{"address": "zoe@example.test"}])
    assert await _copies(dovecot, target) == []


async def test_a_failing_imap_server_does_not_fail_the_request(
    client: httpx.AsyncClient,
    auth: Headers,
    target: SyncTarget,
    dovecot: DovecotServer,
    smtp_relay: SmtpRelay,
    caplog: pytest.LogCaptureFixture,
) -> None:
    await set_account(
        client, auth, target, dovecot, smtp_relay,
        send_options={"save_drafts": True},
        imap={
            "host": dovecot.host,
            "port": free_port(),  # nothing listens there
            "security": "tls",
            "username": target.user.username,
            "password": target.user.password,
        },
    )  # fmt: skip
    draft = await create_draft(client, auth, target, to=[{"address": "zoe@example.test"}])
    await _save(client, auth, target, draft["id"], to=[{"address": "zoe@example.test"}], text="x")
    got = await client.get(f"/api/drafts/{draft['id']}", headers=auth)
    assert got.status_code == 200
    assert got.json()["text"] == "x"
    failures = [r.getMessage() for r in caplog.records if "draft.copy_failed" in r.getMessage()]
    assert any(draft["id"] in message for message in failures)
    assert (await client.delete(f"/api/drafts/{draft['id']}", headers=auth)).status_code == 204
