"""The backup and restore procedure of DEPLOYMENT.md, run against real servers.

An account's mirror is built from the fixtures' Dovecot in a database of its own;
that database is dumped with `pg_dump --format=custom`, dropped, and restored with
`pg_restore` into a new database. A service pointed at the restored database is
ready at once, and the next sync pass of the account fetches nothing: the restored
mailbox rows carry UIDVALIDITY / UIDNEXT / HIGHESTMODSEQ, so the engine resumes where
the dump left it instead of mirroring every mailbox again (no resync storm). A
message delivered after the dump is then fetched alone.
"""

from __future__ import annotations

import asyncio
import subprocess
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from mailsvc.app import create_app
from mailsvc.config import Settings
from mailsvc.models import Mailbox, Message
from mailsvc.runtime import Role, open_runtime
from mailsvc.sync.engine import SyncEngine
from tests.fixtures import imap_client
from tests.fixtures.app import TokenFactory, account_body
from tests.fixtures.databases import (
    create_database,
    drop_database,
    dump_tools,
    libpq_url,
    server_major,
)
from tests.fixtures.dovecot import DovecotServer, TestMailUser
from tests.fixtures.smtp_server import SmtpRelay
from tests.sync.messages import make_message

INBOX_MESSAGES = 30
ARCHIVE_MESSAGES = 10

MirrorState = tuple[set[tuple[str, int | None, int | None, int | None]], set[tuple[uuid.UUID, int]]]


async def _run(*command: str) -> None:
    completed = await asyncio.to_thread(
        subprocess.run, list(command), capture_output=True, text=True, check=False
    )
    assert completed.returncode == 0, completed.stderr


async def _mirror_state(engine: SyncEngine, account_id: uuid.UUID) -> MirrorState:
    async with engine.sessionmaker() as session:
        mailboxes = (
            await session.execute(
                select(Mailbox.name, Mailbox.uidvalidity, Mailbox.uidnext, Mailbox.highestmodseq)
                .where(Mailbox.account_id == account_id)
            )
        ).all()  # fmt: skip
        messages = (
            await session.execute(
                select(Message.id, Message.uid).where(Message.account_id == account_id)
            )
        ).all()
    return (
        {(name, validity, uid_next, modseq) for name, validity, uid_next, modseq in mailboxes},
        {(message_id, int(uid)) for message_id, uid in messages},
    )


@pytest.fixture
async def own_server_database(postgres_server_url: str) -> AsyncIterator[tuple[str, str]]:
    """A migrated database that this test may drop: (URL, name)."""
    url, name = await create_database(postgres_server_url, prefix="mailsvc_backup")
    yield url, name
    await drop_database(postgres_server_url, name)


async def test_a_restored_database_resumes_without_a_resync_storm(
    settings: Settings,
    postgres_server_url: str,
    own_server_database: tuple[str, str],
    make_token: TokenFactory,
    dovecot: DovecotServer,
    smtp_relay: SmtpRelay,
    mail_user: TestMailUser,
    tmp_path: Path,
) -> None:
    pg_dump, pg_restore = dump_tools(await server_major(postgres_server_url))
    source_url, source_name = own_server_database
    tenant_id = f"t-{uuid.uuid4().hex[:10]}"
    # One parser process is plenty for 40 messages and starts faster than two.
    source = settings.model_copy(update={"database_url": source_url, "sync_parse_processes": 1})

    inbox = [make_message(i)[1] for i in range(INBOX_MESSAGES)]
    archive = [make_message(500 + i)[1] for i in range(ARCHIVE_MESSAGES)]
    await asyncio.to_thread(imap_client.append, dovecot, mail_user, "INBOX", inbox)
    await asyncio.to_thread(imap_client.append, dovecot, mail_user, "Archive", archive)

    # The account is registered through the API and mirrored by a worker's engine.
    app = create_app(source)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://mailsvc.test") as http:
            response = await http.post(
                "/api/accounts",
                json=account_body(dovecot, smtp_relay, mail_user),
                headers={"Authorization": f"Bearer {make_token(tenant_id)}"},
                params={"verify": "false"},
            )
    assert response.status_code == 201, response.text
    account_id = uuid.UUID(response.json()["id"])
    async with open_runtime(source, role=Role.WORKER) as worker:
        assert worker.sync_engine is not None
        first = await worker.sync_engine.sync_account(tenant_id, account_id)
        assert first.new_messages == INBOX_MESSAGES + ARCHIVE_MESSAGES
        before = await _mirror_state(worker.sync_engine, account_id)

    # Back up, lose the database, restore it under a new name (DEPLOYMENT.md).
    dump = tmp_path / "mailsvc.dump"
    await _run(pg_dump, "--format=custom", "--file", str(dump), libpq_url(source_url))
    await drop_database(postgres_server_url, source_name)
    restored_url, restored_name = await create_database(
        postgres_server_url, prefix="mailsvc_restored", migrate=False
    )
    try:
        await _run(
            pg_restore, "--no-owner", "--exit-on-error", "--single-transaction",
            "--dbname", libpq_url(restored_url), str(dump),
        )  # fmt: skip
        restored = source.model_copy(update={"database_url": restored_url})

        # The service comes up ready on the restored database (migrations at head) ...
        app = create_app(restored)
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://r.test") as http:
                ready = await http.get("/ready")
        assert ready.status_code == 200, ready.text

        async with open_runtime(restored, role=Role.WORKER) as worker:
            engine = worker.sync_engine
            assert engine is not None
            # ... the mirror is as it was, ids included, and the next pass fetches nothing.
            assert await _mirror_state(engine, account_id) == before
            resumed = await engine.sync_account(tenant_id, account_id)
            assert (resumed.new_messages, resumed.updated, resumed.deleted) == (0, 0, 0)

            # Mail that arrived after the backup is fetched, and only that.
            await asyncio.to_thread(
                imap_client.append, dovecot, mail_user, "INBOX", [make_message(900)[1]]
            )
            later = await engine.sync_account(tenant_id, account_id)
            assert later.new_messages == 1
            _, messages = await _mirror_state(engine, account_id)
            assert len(messages) == INBOX_MESSAGES + ARCHIVE_MESSAGES + 1
    finally:
        await drop_database(postgres_server_url, restored_name)
