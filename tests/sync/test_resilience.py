"""The sync survives what servers and mailboxes throw at it."""

import asyncio
import imaplib
import time
from collections.abc import Sequence
from pathlib import Path

import pytest
from fastapi import FastAPI
from sqlalchemy import func, select

from mailsvc.account.logins import AccountLogins
from mailsvc.config import Settings
from mailsvc.imap.errors import ImapConnectError
from mailsvc.mime import ParsedMessage
from mailsvc.models import Attachment, Message
from mailsvc.runtime import Runtime
from mailsvc.sync.engine import SyncEngine
from mailsvc.sync.parser import ParserPool, PartialSource
from tests.fixtures import imap_client
from tests.fixtures.dovecot import DovecotServer
from tests.fixtures.mail import SyncTarget
from tests.sync.messages import make_message

CORPUS = Path(__file__).resolve().parents[1] / "mime" / "corpus"


def _engine(app: FastAPI, settings: Settings, parser: ParserPool, **overrides: int) -> SyncEngine:
    state: Runtime = app.state.mailsvc
    return SyncEngine(
        sessionmaker=state.sessionmaker,
        logins=state.component(AccountLogins),
        settings=settings.model_copy(update=overrides),
        parser=parser,
    )


class _CutAfter(ParserPool):
    """Parses normally, but kicks the account's IMAP sessions after `batches` batches:
    the connection dies while the next batch is being fetched."""

    def __init__(self, inner: ParserPool, dovecot: DovecotServer, user: str, batches: int):
        super().__init__(processes=1)
        self._inner, self._dovecot, self._user, self._left = inner, dovecot, user, batches

    async def parse(self, sources: Sequence[bytes | PartialSource]) -> list[ParsedMessage]:
        self._left -= 1
        if self._left == 0:
            await asyncio.to_thread(self._dovecot.kick, self._user)
        return await self._inner.parse(sources)


async def _stored_uids(engine: SyncEngine, target: SyncTarget) -> list[int]:
    async with engine.sessionmaker() as session:
        rows = await session.scalars(
            select(Message.uid).where(Message.account_id == target.account_id)
        )
        return sorted(int(uid) for uid in rows.all())


async def test_connection_cut_mid_initial_sync_resumes_without_loss_or_duplicates(
    app: FastAPI,
    settings: Settings,
    parser_pool: ParserPool,
    target: SyncTarget,
    dovecot: DovecotServer,
) -> None:
    messages = [make_message(i)[1] for i in range(400)]
    await asyncio.to_thread(imap_client.append, dovecot, target.user, "INBOX", messages)
    cutting = _CutAfter(parser_pool, dovecot, target.user.username, batches=3)
    first = _engine(app, settings, cutting, sync_batch_messages=40)

    with pytest.raises(ImapConnectError):
        await first.sync_account(target.tenant_id, target.account_id)
    partial = await _stored_uids(first, target)
    assert 0 < len(partial) < 400  # it really stopped half-way

    again = _engine(app, settings, parser_pool, sync_batch_messages=40)
    await again.sync_account(target.tenant_id, target.account_id)
    assert await _stored_uids(again, target) == list(range(1, 401))


async def test_every_cpython_test_email_message_is_stored(
    engine: SyncEngine, target: SyncTarget, dovecot: DovecotServer
) -> None:
    files = sorted((CORPUS / "cpython").glob("msg_*.txt")) + sorted(CORPUS.glob("*.eml"))
    assert len(files) > 50
    raw = [path.read_bytes() for path in files]
    await asyncio.to_thread(imap_client.append, dovecot, target.user, "INBOX", raw)

    report = await engine.sync_account(target.tenant_id, target.account_id)

    assert report.new_messages == len(files)
    async with engine.sessionmaker() as session:
        stored = await session.scalar(
            select(func.count()).where(Message.account_id == target.account_id)
        )
        notes = dict(
            (
                await session.execute(
                    select(Message.subject, Message.parse_error).where(
                        Message.account_id == target.account_id,
                        Message.parse_error.is_not(None),
                    )
                )
            ).all()
        )
    assert stored == len(files)
    # Malformed ones are stored with a note instead of failing the mailbox
    # (17 of these 59 files have defects the parser reports).
    assert len(notes) >= 10
    assert "base64" in (notes.get("Bad base64") or "")


def _append_dated(dovecot: DovecotServer, target: SyncTarget, mailbox: str, when: float) -> None:
    with imap_client.imap_session(dovecot, target.user) as client:
        for index in range(3):
            status, _ = client.append(
                mailbox, None, imaplib.Time2Internaldate(when), make_message(index)[1]
            )
            assert status == "OK"


async def test_sync_options_limit_what_the_first_sync_fetches(
    app: FastAPI, engine: SyncEngine, target: SyncTarget, dovecot: DovecotServer
) -> None:
    state: Runtime = app.state.mailsvc
    from mailsvc.models import Account

    async with state.sessionmaker.begin() as session:
        account = await session.get(Account, target.account_id)
        assert account is not None
        account.sync_options = {
            "since": "2026-01-01",
            "max_messages_per_mailbox": 2,
            "exclude_mailboxes": ["junk"],
        }
    old = time.mktime((2025, 6, 1, 12, 0, 0, 0, 0, -1))
    new = time.mktime((2026, 6, 1, 12, 0, 0, 0, 0, -1))
    await asyncio.to_thread(_append_dated, dovecot, target, "INBOX", old)
    await asyncio.to_thread(_append_dated, dovecot, target, "INBOX", new)
    await asyncio.to_thread(_append_dated, dovecot, target, "Junk", new)

    await engine.sync_account(target.tenant_id, target.account_id)

    # Of the three recent ones only the newest two; nothing from 2025; no Junk at all.
    assert await _stored_uids(engine, target) == [5, 6]
    # New mail after the first sync is always fetched, whatever the limits.
    await asyncio.to_thread(_append_dated, dovecot, target, "INBOX", new)
    await engine.sync_account(target.tenant_id, target.account_id)
    assert await _stored_uids(engine, target) == [5, 6, 7, 8, 9]


async def test_message_above_the_size_cap_keeps_text_and_attachment_list(
    app: FastAPI,
    settings: Settings,
    parser_pool: ParserPool,
    target: SyncTarget,
    dovecot: DovecotServer,
) -> None:
    _, big = make_message(1, subject="Big one", attachment=b"\x01" * 300_000)
    await asyncio.to_thread(imap_client.append, dovecot, target.user, "INBOX", [big])
    capped = _engine(app, settings, parser_pool, sync_max_message_bytes=64 * 1024)

    await capped.sync_account(target.tenant_id, target.account_id)

    async with capped.sessionmaker() as session:
        message = await session.scalar(
            select(Message).where(Message.account_id == target.account_id)
        )
        assert message is not None
        attachment = await session.scalar(
            select(Attachment).where(Attachment.message_id == message.id)
        )
    assert message.subject == "Big one"
    assert message.text_body is not None
    assert "Body of message 1." in message.text_body
    assert message.has_attachments
    assert attachment is not None
    assert attachment.section == "2"
    assert attachment.filename == "a1.bin"
    assert abs(attachment.size - 300_000) < 1000
