"""An IMAP server that lies never crashes the process, exhausts its memory or stalls
another account: what it broke gets a recorded error, visible through the API.

Each test syncs an account on `tests.fixtures.hostile_imap` (a real socket server
that tells one lie) and, at the same time on the same event loop, an account on
Dovecot with a message waiting, which must be stored. The process' peak RSS during
both passes (VmHWM, reset through /proc/self/clear_refs) must grow by under 50 MB;
what the hostile server streams is written chunk by chunk, so that growth is the
client's.
"""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from mailsvc.account.logins import AccountLogins
from mailsvc.config import Settings
from mailsvc.imap.errors import ImapConnectError, ImapError
from mailsvc.runtime import Runtime
from mailsvc.sync.engine import SyncEngine, SyncReport
from mailsvc.sync.parser import ParserPool
from tests.fixtures import hostile_imap, imap_client
from tests.fixtures.dovecot import DovecotServer
from tests.fixtures.hostile_imap import HostileImapServer, Lie
from tests.fixtures.imap_script import FakeMailbox, register_account
from tests.fixtures.mail import SyncTarget
from tests.sync.messages import make_message

pytestmark = pytest.mark.faults

SERVER = "IMAP4rev1 ENABLE CONDSTORE QRESYNC LIST-STATUS"
RSS_GROWTH_LIMIT = 50 * 1024 * 1024
MESSAGE = make_message(1, subject="Told by a liar")[1]


class _PeakRss:
    """The growth of this process' peak RSS over a block."""

    def __enter__(self) -> _PeakRss:
        Path("/proc/self/clear_refs").write_text("5")  # VmHWM := VmRSS
        self._start = _status_kib("VmRSS")
        self.growth = 0
        return self

    def __exit__(self, *_: object) -> None:
        self.growth = (_status_kib("VmHWM") - self._start) * 1024


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise AssertionError(field)


def _engine(app: FastAPI, settings: Settings, parser: ParserPool, **overrides: int) -> SyncEngine:
    state: Runtime = app.state.mailsvc
    return SyncEngine(
        sessionmaker=state.sessionmaker,
        logins=state.component(AccountLogins),
        settings=settings.model_copy(update=overrides),
        parser=parser,
    )


async def _beside_dovecot(
    engine: SyncEngine,
    tenant_id: str,
    hostile_account: uuid.UUID,
    target: SyncTarget,
    dovecot: DovecotServer,
) -> SyncReport | ImapError:
    """Sync the hostile account and the Dovecot one together; the hostile outcome."""
    _, waiting = make_message(2, subject="Delivered beside a liar")
    await asyncio.to_thread(imap_client.append, dovecot, target.user, "INBOX", [waiting])
    with _PeakRss() as peak:
        hostile, normal = await asyncio.wait_for(
            asyncio.gather(
                engine.sync_account(tenant_id, hostile_account),
                engine.sync_account(tenant_id, target.account_id),
                return_exceptions=True,
            ),
            timeout=60,
        )
    assert isinstance(normal, SyncReport), normal
    assert normal.new_messages == 1
    assert peak.growth < RSS_GROWTH_LIMIT, f"peak RSS grew by {peak.growth / 2**20:.0f} MiB"
    # Only the adapter's errors, never a crash of the pass.
    assert isinstance(hostile, SyncReport | ImapError), repr(hostile)
    return hostile


async def _api(client: httpx.AsyncClient, auth: dict[str, str], path: str) -> Any:
    response = await client.get(path, headers=auth)
    assert response.status_code == 200, response.text
    return response.json()


async def _mailboxes(
    client: httpx.AsyncClient, auth: dict[str, str], account_id: uuid.UUID
) -> dict[str, dict[str, Any]]:
    status = await _api(client, auth, f"/api/sync/status/{account_id}")
    return {mailbox["name"]: mailbox for mailbox in status["mailboxes"]}


async def _messages(
    client: httpx.AsyncClient, auth: dict[str, str], account_id: uuid.UUID
) -> list[dict[str, Any]]:
    page = await _api(client, auth, f"/api/messages?account_id={account_id}")
    return [await _api(client, auth, f"/api/messages/{m['id']}") for m in page["items"]]


def _inbox(*messages: bytes) -> dict[str, FakeMailbox]:
    inbox = FakeMailbox(uidvalidity=7)
    for raw in messages:
        inbox.add(raw)
    return {"INBOX": inbox}


@pytest.mark.parametrize(
    ("lie", "error"),
    [
        # The literal's rest never comes: the command times out (5 s in the tests).
        (hostile_imap.literal_longer_than_sent(MESSAGE), "server stopped answering"),
        # 100 MB announced and streamed: refused at the announcement, nothing allocated.
        (hostile_imap.huge_literal(100 * 1024 * 1024), "literal of 104857600 bytes"),
        # 64 MiB without a CRLF: the connection is dropped at 16 MiB.
        (hostile_imap.endless_line(64 * 1024 * 1024), "line of over 16777216 bytes"),
        # 128 MiB of short FETCH lines: the answer is held up to what was asked for.
        (hostile_imap.endless_answer(128 * 1024 * 1024), "with over"),
    ],
    ids=["literal-longer-than-sent", "literal-100MB", "endless-line", "endless-answer"],
)
async def test_framing_lie_drops_the_connection_and_records_it_on_the_account(
    engine: SyncEngine,
    client: httpx.AsyncClient,
    auth: dict[str, str],
    tenant_id: str,
    target: SyncTarget,
    dovecot: DovecotServer,
    lie: Lie,
    error: str,
) -> None:
    async with HostileImapServer(capabilities=SERVER, mailboxes=_inbox(MESSAGE), lie=lie) as server:
        account_id = await register_account(client, auth, server)
        outcome = await _beside_dovecot(engine, tenant_id, account_id, target, dovecot)
        assert server.lies_told == 1

    assert isinstance(outcome, ImapConnectError)
    assert error in str(outcome)
    account = await _api(client, auth, f"/api/accounts/{account_id}")
    assert account["state"] == "connect_error"
    assert error in account["last_error"]
    assert await _messages(client, auth, account_id) == []


async def test_literal_shorter_than_sent_fails_the_mailbox_not_cut_short(
    engine: SyncEngine,
    client: httpx.AsyncClient,
    auth: dict[str, str],
    tenant_id: str,
    target: SyncTarget,
    dovecot: DovecotServer,
) -> None:
    lie = hostile_imap.literal_shorter_than_sent(MESSAGE)
    async with HostileImapServer(capabilities=SERVER, mailboxes=_inbox(MESSAGE), lie=lie) as server:
        account_id = await register_account(client, auth, server)
        outcome = await _beside_dovecot(engine, tenant_id, account_id, target, dovecot)
        assert server.lies_told == 1

    assert isinstance(outcome, SyncReport)
    assert outcome.failed == 1
    inbox = (await _mailboxes(client, auth, account_id))["INBOX"]
    assert inbox["sync_state"] == "error"
    assert "literal shorter than announced" in inbox["sync_error"]
    # Not stored cut to its first 10 bytes.
    assert await _messages(client, auth, account_id) == []


@pytest.mark.parametrize("same_body", [True, False], ids=["repeated", "contradicting"])
async def test_duplicate_uids_give_one_message_or_a_mailbox_error(
    engine: SyncEngine,
    client: httpx.AsyncClient,
    auth: dict[str, str],
    tenant_id: str,
    target: SyncTarget,
    dovecot: DovecotServer,
    same_body: bool,
) -> None:
    other = make_message(3, subject="Another body for the same UID")[1]
    lie = hostile_imap.duplicate_uids(MESSAGE, MESSAGE if same_body else other)
    async with HostileImapServer(capabilities=SERVER, mailboxes=_inbox(MESSAGE), lie=lie) as server:
        account_id = await register_account(client, auth, server)
        outcome = await _beside_dovecot(engine, tenant_id, account_id, target, dovecot)
        assert server.lies_told == 2  # the listing and the body fetch

    assert isinstance(outcome, SyncReport)
    inbox = (await _mailboxes(client, auth, account_id))["INBOX"]
    stored = await _messages(client, auth, account_id)
    if same_body:
        # The responses for UID 1 are merged, a later one winning item by item.
        assert (inbox["sync_state"], inbox["sync_error"]) == ("synced", None)
        assert [(m["subject"], m["unread"]) for m in stored] == [("Told by a liar", False)]
    else:
        assert inbox["sync_state"] == "error"
        assert "two different" in inbox["sync_error"]
        assert stored == []


async def test_uidvalidity_zero_fails_its_mailbox_only(
    engine: SyncEngine,
    client: httpx.AsyncClient,
    auth: dict[str, str],
    tenant_id: str,
    target: SyncTarget,
    dovecot: DovecotServer,
) -> None:
    mailboxes = _inbox(MESSAGE)
    mailboxes["Archive"] = FakeMailbox(uidvalidity=8)
    mailboxes["Archive"].add(make_message(4, subject="Archived")[1])
    lie = hostile_imap.uidvalidity_zero("INBOX")
    async with HostileImapServer(capabilities=SERVER, mailboxes=mailboxes, lie=lie) as server:
        account_id = await register_account(client, auth, server)
        outcome = await _beside_dovecot(engine, tenant_id, account_id, target, dovecot)
        assert server.lies_told == 1

    assert isinstance(outcome, SyncReport)
    assert outcome.failed == 1
    shown = await _mailboxes(client, auth, account_id)
    assert shown["INBOX"]["sync_state"] == "error"
    assert "UIDVALIDITY 0" in shown["INBOX"]["sync_error"]
    assert (shown["Archive"]["sync_state"], shown["Archive"]["sync_error"]) == ("synced", None)
    assert [m["subject"] for m in await _messages(client, auth, account_id)] == ["Archived"]


@pytest.mark.parametrize("depth", [10_000, 2_000_000])
async def test_deep_bodystructure_is_read_to_a_bounded_depth(
    app: FastAPI,
    settings: Settings,
    parser_pool: ParserPool,
    client: httpx.AsyncClient,
    auth: dict[str, str],
    tenant_id: str,
    target: SyncTarget,
    dovecot: DovecotServer,
    depth: int,
) -> None:
    # Above the size cap, so that the sync asks for the BODYSTRUCTURE.
    capped = _engine(app, settings, parser_pool, sync_max_message_bytes=64 * 1024)
    big = make_message(5, subject="Deep", attachment=b"\x01" * 100_000)[1]
    lie = hostile_imap.nested_bodystructure(depth)
    async with HostileImapServer(capabilities=SERVER, mailboxes=_inbox(big), lie=lie) as server:
        account_id = await register_account(client, auth, server)
        outcome = await _beside_dovecot(capped, tenant_id, account_id, target, dovecot)
        assert server.lies_told == 1

    assert isinstance(outcome, SyncReport)
    assert outcome.new_messages == 1
    inbox = (await _mailboxes(client, auth, account_id))["INBOX"]
    assert (inbox["sync_state"], inbox["sync_error"]) == ("synced", None)
    # Stored from its header, with what could not be read noted on the message.
    (message,) = await _messages(client, auth, account_id)
    assert message["subject"] == "deep"
    assert "nested deeper than 30 levels" in message["parse_error"]


async def test_invalid_modified_utf7_names_fail_their_mailboxes_only(
    engine: SyncEngine,
    client: httpx.AsyncClient,
    auth: dict[str, str],
    tenant_id: str,
    target: SyncTarget,
    dovecot: DovecotServer,
) -> None:
    bad = (
        "&ZeVnLIqe",  # no closing `-`
        "&Jjo!-",  # not base64
        "&AAA-",  # U+0000, which PostgreSQL cannot store
        "&AGE-",  # "a", which must be sent as itself
        "Entw\u00fcrfe",  # 8-bit text instead of modified UTF-7
        "&ZeVnLIqe",  # listed twice
    )
    async with HostileImapServer(
        capabilities=SERVER, mailboxes=_inbox(MESSAGE), listed_as_sent=bad
    ) as server:
        account_id = await register_account(client, auth, server)
        outcome = await _beside_dovecot(engine, tenant_id, account_id, target, dovecot)
        await engine.sync_account(tenant_id, account_id)  # and again: nothing new breaks

    assert isinstance(outcome, SyncReport)
    assert outcome.failed == 5
    shown = await _mailboxes(client, auth, account_id)
    assert (shown["INBOX"]["sync_state"], shown["INBOX"]["sync_error"]) == ("synced", None)
    unreadable = {name: m for name, m in shown.items() if name != "INBOX"}
    assert sorted(unreadable) == sorted(
        ["&ZeVnLIqe\ufffd", "&Jjo!-\ufffd", "&AAA-\ufffd", "&AGE-\ufffd", "Entw\u00fcrfe\ufffd"]
    )
    for mailbox in unreadable.values():
        assert mailbox["sync_state"] == "error"
        assert "not valid modified UTF-7" in mailbox["sync_error"]
    # None of them was selected under a name the server does not know.
    assert not [c for c in server.commands if c.upper().startswith("SELECT") and "INBOX" not in c]
    assert [m["subject"] for m in await _messages(client, auth, account_id)] == ["Told by a liar"]
