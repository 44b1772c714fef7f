"""A `mailsvc worker` SIGKILLed mid-sync, mid-send and mid-index, then another started.

Each test runs real `mailsvc serve` and `mailsvc worker` children on a database and a
Redis database of their own, against the test Dovecot and SMTP relay, and kills the
worker with SIGKILL (no shutdown hook runs, no lease is released, arq's in-progress
keys stay behind) at a moment chosen by watching the database or the servers. The
new worker must finish the job: nothing missing, nothing duplicated, nothing sent
twice (counted in the recipients' Dovecot mailboxes).
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import tantivy

from mailsvc.auth.tokens import TokenCodec
from mailsvc.config import Settings
from mailsvc.kit.redis import create_redis
from mailsvc.search.indexer import BATCH as INDEXER_BATCH
from mailsvc.search.indexer import search_lease_key
from mailsvc.search.tantivy.schema import register_analyzer
from mailsvc.search.tantivy.store import IndexStore
from tests.fixtures.app import account_body
from tests.fixtures.dovecot import DovecotServer, TestMailUser
from tests.fixtures.imap_client import append
from tests.fixtures.net import LOOPBACK, free_port
from tests.fixtures.processes import service_env, wait_until_serving
from tests.fixtures.smtp_server import SmtpRelay
from tests.fixtures.waiting import eventually
from tests.fixtures.worker_kill import (
    Children,
    Database,
    SmtpGate,
    children,
    copies_received,
    deliver_many,
)

pytestmark = pytest.mark.faults

SYNC_MESSAGES = 2_000
SYNC_BATCH = 10
INDEX_MESSAGES = 2_000
SEND_LEASE_SECONDS = 2
# From the kill to the job finished in the next worker. A sync job is handed back
# 10-20 s after its worker died; an entry caught `sending` is taken over 30-45 s after
# its lease ended (the outbox sweep); a search lease expires 30 s after its last renewal.
RECOVERY_SECONDS = 90


def _user(dovecot: DovecotServer, prefix: str) -> TestMailUser:
    return dovecot.add_user(f"{prefix}-{secrets.token_hex(4)}", secrets.token_urlsafe(10))


@contextlib.asynccontextmanager
async def _api(
    settings: Settings, port: int, tenant: str, running: Children
) -> AsyncIterator[httpx.AsyncClient]:
    token = TokenCodec(settings).issue(
        subject="test",
        tenants=[tenant],
        scopes=["accounts:write", "mail:read", "mail:send"],
        expires_in=600,
    )
    async with httpx.AsyncClient(
        base_url=f"http://{LOOPBACK}:{port}",
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    ) as client:
        await running.serve(port)
        await wait_until_serving(client)
        yield client


async def _create_account(client: httpx.AsyncClient, body: dict[str, Any]) -> uuid.UUID:
    created = await client.post("/api/accounts", json=body, params={"verify": "false"})
    assert created.status_code == 201, created.text
    return uuid.UUID(created.json()["id"])


def _env(
    settings: Settings,
    database: str,
    redis: str,
    dovecot: DovecotServer,
    tmp_path: Path,
    **extra: str,
) -> dict[str, str]:
    return service_env(
        settings,
        database_url=database,
        redis_url=redis,
        ca_file=dovecot.ca_cert_path,
        data_dir=tmp_path,
        IDLE_ENABLED="false",
        SYNC_RESYNC_INTERVAL_MINUTES="0",
        **extra,
    )


async def test_an_initial_sync_killed_mid_mailbox_is_finished_by_the_next_worker(
    settings: Settings,
    isolated_database: str,
    isolated_redis: str,
    dovecot: DovecotServer,
    smtp_relay: SmtpRelay,
    tmp_path: Path,
) -> None:
    """A first mirror of 2,000 messages in batches of 10, its worker SIGKILLed once a
    tenth is stored. arq would not run the job again (one try, and its in-progress key
    lives for hours): `recover_interrupted_syncs` hands it back, and the next worker
    resumes at the stored `uidnext`."""
    user = _user(dovecot, "wk-sync")
    await asyncio.to_thread(deliver_many, dovecot, user, SYNC_MESSAGES, word="syncbulk")
    env = _env(
        settings, isolated_database, isolated_redis, dovecot, tmp_path,
        SYNC_BATCH_MESSAGES=str(SYNC_BATCH),
    )  # fmt: skip
    async with (
        children(env, tmp_path) as running,
        Database(isolated_database) as db,
        _api(settings, free_port(), "wk-sync", running) as client,
    ):
        first = await running.worker("worker-1")
        account_id = await _create_account(client, account_body(dovecot, smtp_relay, user))

        async def stored() -> int:
            count: int = await db.value(
                "SELECT count(*) FROM messages WHERE account_id = $1", account_id
            )
            return count

        async def some_stored() -> bool:
            return await stored() >= SYNC_MESSAGES // 10

        await eventually(some_stored, within=60, interval=0.01, what="first batches stored")
        await running.kill(first)
        at_kill = await stored()
        assert at_kill < SYNC_MESSAGES, "the kill came after the sync had finished"
        # What the dead worker committed is consistent: every UID below the mailbox's
        # stored `uidnext` is stored (a fresh mailbox's UIDs are 1..N).
        uidnext, below = await _inbox_cursor(db, account_id)
        assert below == uidnext - 1 == at_kill, (uidnext, below, at_kill)

        await running.worker("worker-2")

        async def all_stored() -> bool:
            return await stored() == SYNC_MESSAGES

        await eventually(all_stored, within=RECOVERY_SECONDS, interval=0.2, what="sync finished")
        duplicates = await db.value(
            "SELECT count(*) FROM (SELECT mailbox_id, uid FROM messages WHERE account_id = $1"
            " GROUP BY mailbox_id, uid HAVING count(*) > 1) AS d",
            account_id,
        )
        assert duplicates == 0
        uidnext, below = await _inbox_cursor(db, account_id)
        assert (uidnext, below) == (SYNC_MESSAGES + 1, SYNC_MESSAGES)
        synced = await db.value(
            "SELECT messages_synced FROM mailboxes WHERE account_id = $1 AND name = 'INBOX'",
            account_id,
        )
        assert synced == SYNC_MESSAGES


async def _inbox_cursor(db: Database, account_id: uuid.UUID) -> tuple[int, int]:
    """The INBOX's stored `uidnext` and how many of its rows lie below it."""
    rows = await db.rows(
        "SELECT b.uidnext, (SELECT count(*) FROM messages m WHERE m.mailbox_id = b.id"
        " AND m.uid < coalesce(b.uidnext, 1)) AS below"
        " FROM mailboxes b WHERE b.account_id = $1 AND b.name = 'INBOX'",
        account_id,
    )
    assert len(rows) == 1
    return int(rows[0]["uidnext"] or 1), int(rows[0]["below"])


async def test_sends_in_flight_when_the_worker_is_killed_arrive_exactly_once(
    settings: Settings,
    isolated_database: str,
    isolated_redis: str,
    dovecot: DovecotServer,
    smtp_relay: SmtpRelay,
    tmp_path: Path,
) -> None:
    """Three scheduled sends, all in one SMTP transaction when the worker dies:

    - `before_data`: held at its DATA command (envelope given, no content sent);
    - `accepted`: the whole message sent and the server took it (it is delivered and,
      like Gmail or Outlook, the server filed it in the sender's Sent mailbox) but its
      reply never came: the ambiguous case;
    - `unanswered`: the whole message sent, never delivered, no reply.

    The next worker takes each over when its send lease ends, checks the Sent mailbox
    first, and sends what is not there. It is killed too, while its takeover of
    `before_data` is held at DATA again; a third worker sends it. One copy of each at
    its recipient.
    """
    sender = _user(dovecot, "wk-snd")
    held_rcpt, stalled_rcpt = _user(dovecot, "wk-rcv-a"), _user(dovecot, "wk-rcv-b")
    gate = SmtpGate(smtp_relay.host, smtp_relay.port, hold_for=held_rcpt.email)
    await gate.start()
    env = _env(
        settings, isolated_database, isolated_redis, dovecot, tmp_path,
        SEND_LEASE_SECONDS=str(SEND_LEASE_SECONDS),
    )  # fmt: skip
    body = account_body(dovecot, smtp_relay, sender)
    body["smtp"] |= {"host": LOOPBACK, "port": gate.port, "security": "none"}
    try:
        async with (
            children(env, tmp_path) as running,
            Database(isolated_database) as db,
            _api(settings, free_port(), "wk-send", running) as client,
        ):
            account_id = await _create_account(client, body)
            first = await running.worker("worker-1")
            stalls = [smtp_relay.stall_after_data(), smtp_relay.stall_after_data()]
            send_at = (datetime.now(UTC) + timedelta(seconds=2)).isoformat()
            entries: dict[str, dict[str, Any]] = {}
            for name, recipient in (
                ("before_data", held_rcpt),
                ("accepted", stalled_rcpt),
                ("unanswered", stalled_rcpt),
            ):
                sent = await client.post(
                    "/api/send",
                    json={
                        "account_id": str(account_id),
                        "to": [{"address": recipient.email}],
                        "subject": f"worker kill {name}",
                        "text": f"sent {name}",
                        "send_at": send_at,
                    },
                )
                assert sent.status_code == 202, sent.text
                entries[name] = sent.json()
            await asyncio.wait_for(gate.holding.wait(), 30)
            for stall in stalls:
                assert await asyncio.to_thread(stall.holding.wait, 30), "no message stalled"
            # The server accepted `accepted` and filed it; its reply is what gets lost.
            raw = await db.value(
                "SELECT raw_mime FROM outbox WHERE id = $1", uuid.UUID(entries["accepted"]["id"])
            )
            await dovecot.adeliver(stalled_rcpt.email, raw, mail_from=sender.email)
            await asyncio.to_thread(append, dovecot, sender, "Sent", [raw])
            await running.kill(first)

            async def status(name: str) -> str:
                response = await client.get(f"/api/outbox/{entries[name]['id']}")
                assert response.status_code == 200, response.text
                return str(response.json()["status"])

            assert [await status(name) for name in entries] == ["sending"] * 3
            gate.arm()
            second = await running.worker("worker-2")

            async def are_sent(*names: str) -> bool:
                return [await status(name) for name in names] == ["sent"] * len(names)

            await eventually(
                lambda: are_sent("accepted", "unanswered"),
                within=RECOVERY_SECONDS,
                interval=0.5,
                what="taken over",
            )
            # The takeover of `before_data` (a job of the outbox sweep) is held at DATA.
            await asyncio.wait_for(gate.holding.wait(), RECOVERY_SECONDS)
            await running.kill(second)
            assert await status("before_data") == "sending"
            await running.worker("worker-3")
            await eventually(
                lambda: are_sent(*entries), within=RECOVERY_SECONDS, interval=0.5, what="all sent"
            )
    finally:
        await gate.stop()
    for name, recipient in (
        ("before_data", held_rcpt),
        ("accepted", stalled_rcpt),
        ("unanswered", stalled_rcpt),
    ):
        message_id = entries[name]["message_id"]
        copies = await asyncio.to_thread(copies_received, dovecot, recipient, message_id)
        assert copies == 1, (name, copies)
    relayed = {
        name: sum(entry["message_id"].encode() in m.data for m in smtp_relay.received)
        for name, entry in entries.items()
    }
    # `accepted` was never sent again: it was found in the Sent mailbox.
    assert relayed == {"before_data": 1, "accepted": 0, "unanswered": 1}


async def test_indexing_killed_between_index_commit_and_queue_commit_leaves_each_message_once(
    settings: Settings,
    isolated_database: str,
    isolated_redis: str,
    dovecot: DovecotServer,
    smtp_relay: SmtpRelay,
    tmp_path: Path,
) -> None:
    """A first mirror's search queue drained by a worker SIGKILLed mid-way, at the worst
    moment: a batch is committed to the Tantivy index and its queue rows are not yet
    deleted (the test holds a row lock that keeps the DELETE waiting). The next worker
    repeats that batch after the dead worker's lease runs out: every message is then
    searchable, and the index holds each document once."""
    tenant = "wk-index"
    user = _user(dovecot, "wk-index")
    await asyncio.to_thread(deliver_many, dovecot, user, INDEX_MESSAGES, word="indexbulk")
    env = _env(settings, isolated_database, isolated_redis, dovecot, tmp_path)
    redis = create_redis(isolated_redis)
    # Another holder of the tenant's writer lease: the queue fills while the sync runs.
    await redis.set(search_lease_key(tenant), "test-holder", px=120_000)
    try:
        async with (
            children(env, tmp_path) as running,
            Database(isolated_database) as db,
            Database(isolated_database) as blocker,
            _api(settings, free_port(), tenant, running) as client,
        ):
            first = await running.worker("worker-1")
            account_id = await _create_account(client, account_body(dovecot, smtp_relay, user))

            async def queued() -> int:
                count: int = await db.value("SELECT count(*) FROM search_queue")
                return count

            async def all_queued() -> bool:
                return await queued() == INDEX_MESSAGES

            await eventually(all_queued, within=60, interval=0.2, what="first mirror queued")
            # Hold one row of the third batch: the worker indexes two batches, writes
            # the third into the index and waits to delete its rows.
            await blocker.execute("BEGIN")
            await blocker.value(
                # (FOR UPDATE beside OFFSET would lock the rows skipped too.)
                "SELECT seq FROM search_queue WHERE seq ="
                " (SELECT seq FROM search_queue ORDER BY seq OFFSET $1 LIMIT 1) FOR UPDATE",
                2 * INDEXER_BATCH + 10,
            )
            await redis.delete(search_lease_key(tenant))

            async def waiting_to_dequeue() -> bool:
                waiting: int = await db.value(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                    " AND wait_event_type = 'Lock' AND query ILIKE 'DELETE FROM search_queue%'"
                )
                return waiting == 1

            await eventually(waiting_to_dequeue, within=30, interval=0.05, what="third batch")
            indexed_at_kill = _documents(tmp_path, tenant)
            await running.kill(first)
            await blocker.execute("ROLLBACK")
            assert indexed_at_kill == 3 * INDEXER_BATCH
            assert await queued() == INDEX_MESSAGES - 2 * INDEXER_BATCH

            await running.worker("worker-2")

            async def drained() -> bool:
                return await queued() == 0

            await eventually(drained, within=RECOVERY_SECONDS, interval=0.2, what="queue drained")
            found = await _search_all(client, account_id, "indexbulk")
            stored = await db.value(
                "SELECT count(*) FROM messages WHERE account_id = $1", account_id
            )
        assert stored == INDEX_MESSAGES
        assert len(found) == len(set(found)) == INDEX_MESSAGES
        assert _documents(tmp_path, tenant) == INDEX_MESSAGES
    finally:
        await redis.aclose()


def _documents(data_dir: Path, tenant: str) -> int:
    """Live documents in the tenant's Tantivy index, as of its last commit."""
    index = tantivy.Index.open(str(IndexStore(data_dir / "search").directory(tenant)))
    register_analyzer(index)
    count: int = index.searcher().num_docs
    return count


async def _search_all(client: httpx.AsyncClient, account_id: uuid.UUID, q: str) -> list[str]:
    """Every message id a search answers, page after page."""
    found: list[str] = []
    cursor: str | None = None
    while True:
        params: dict[str, Any] = {"q": q, "account_id": str(account_id), "limit": 200}
        if cursor is not None:
            params["cursor"] = cursor
        response = await client.get("/api/messages", params=params)
        assert response.status_code == 200, response.text
        page = response.json()
        found += [item["id"] for item in page["items"]]
        cursor = page.get("next_cursor")
        if cursor is None:
            return found
