"""Bounces reach the outbox: a delivery report synced from the account's mailbox marks
the entry it reports on `bounced`, once, and nothing else.

Against the real PostgreSQL and Dovecot: entries are written straight into the
outbox as `sent`, reports are APPENDed to INBOX, and the sync does the rest.
"""

from __future__ import annotations

import asyncio
import secrets
import uuid
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select

from mailsvc.account.logins import AccountLogins
from mailsvc.config import Settings
from mailsvc.mime import parse_message
from mailsvc.mime.dsn import MAX_REPORT_BYTES
from mailsvc.mime.parse import MAX_DELIVERY_REPORT_BYTES
from mailsvc.models import Change, Message, OutboxMessage
from mailsvc.outbox.bounces import PermanentBounce, permanent_bounce
from mailsvc.outbox.repository import OutboxRepository
from mailsvc.runtime import Runtime
from mailsvc.sync.engine import SyncEngine
from mailsvc.sync.parser import ParserPool
from tests.fixtures import imap_client
from tests.fixtures.app import TokenFactory
from tests.fixtures.dovecot import DovecotServer
from tests.fixtures.mail import SyncTarget, register_account
from tests.fixtures.smtp_server import SmtpRelay

DIAGNOSTIC = (
    "smtp; 550 5.1.1 <nobody@example.org>: Recipient address rejected: "
    "User unknown in virtual mailbox table"
)
STORED_DIAGNOSTIC = DIAGNOSTIC.removeprefix("smtp; ")
BOUNCE_SUBJECT = "Undelivered Mail Returned to Sender"


def crlf(text: str) -> bytes:
    return text.replace("\n", "\r\n").encode("utf-8")


@dataclass(frozen=True)
class Failure:
    """One recipient block of a report."""

    recipient: str = "nobody@example.org"
    action: str = "failed"
    status: str = "5.1.1"
    diagnostic: str = DIAGNOSTIC


def report(
    message_id: str,
    *failures: Failure,
    returned: str = "message/rfc822",
    report_type: str = "delivery-status",
    returned_body: str = "Hello.\n",
) -> bytes:
    """A delivery status notification as Postfix writes one, about `message_id`."""
    boundary = f"{secrets.token_hex(6)}.1717410662/mx.example.com"
    blocks = "\n".join(
        f"Final-Recipient: rfc822; {f.recipient}\n"
        f"Original-Recipient: rfc822;{f.recipient}\n"
        f"Action: {f.action}\n"
        f"Status: {f.status}\n"
        "Remote-MTA: dns; mx.example.org\n"
        f"Diagnostic-Code: {f.diagnostic}\n"
        for f in failures or (Failure(),)
    )
    returned_part = f"""\
From: Sender <sender@example.test>
To: nobody@example.org
Subject: Quarterly numbers
Date: Mon, 03 Jun 2024 10:30:00 +0000
Message-ID: {message_id}
MIME-Version: 1.0
Content-Type: text/plain; charset="utf-8"
"""
    if returned == "message/rfc822":
        returned_part += f"\n{returned_body}"
    return crlf(
        f"""\
Return-Path: <>
Date: Mon,  3 Jun 2024 10:31:02 +0000 (UTC)
From: MAILER-DAEMON@mx.example.com (Mail Delivery System)
Subject: {BOUNCE_SUBJECT}
To: sender@example.test
Auto-Submitted: auto-replied
MIME-Version: 1.0
Content-Type: multipart/report; report-type={report_type};
\tboundary="{boundary}"
Content-Transfer-Encoding: 8bit
Message-Id: <{secrets.token_hex(8)}@mx.example.com>

This is a MIME-encapsulated message.

--{boundary}
Content-Description: Notification
Content-Type: text/plain; charset=utf-8
Content-Transfer-Encoding: 8bit

This is the mail system at host mx.example.com.

I'm sorry to have to inform you that your message could not
be delivered to one or more recipients.

--{boundary}
Content-Description: Delivery report
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.example.com
X-Postfix-Queue-ID: 8D2C1234567
Arrival-Date: Mon,  3 Jun 2024 10:31:01 +0000 (UTC)

{blocks}
--{boundary}
Content-Description: Undelivered Message
Content-Type: {returned}
Content-Transfer-Encoding: 8bit

{returned_part}
--{boundary}--
"""
    )


def new_message_id() -> str:
    return f"<{secrets.token_urlsafe(18)}@example.test>"


def ordinary(subject: str, *, in_reply_to: str | None = None) -> bytes:
    message = EmailMessage()
    message["From"] = "Someone <someone@example.org>"
    message["To"] = "sender@example.test"
    message["Subject"] = subject
    message["Message-ID"] = new_message_id()
    if in_reply_to is not None:
        message["In-Reply-To"] = in_reply_to
        message["References"] = in_reply_to
    message.set_content("Thanks, got it.\n")
    return message.as_bytes()


def forwarded(attached: bytes) -> bytes:
    """A message forwarding `attached` as message/rfc822."""
    head = crlf(
        "From: Someone <someone@example.org>\nSubject: Fwd: bounce\n"
        "Content-Type: multipart/mixed; boundary=outer\n\n"
        "--outer\nContent-Type: text/plain\n\nsee below\n"
        "--outer\nContent-Type: message/rfc822\n\n"
    )
    return head + attached + b"\r\n--outer--\r\n"


# --- what the parser hands over ------------------------------------------------


def test_a_delivery_report_keeps_its_bytes_for_the_outbox() -> None:
    raw = report(new_message_id())
    assert parse_message(raw).delivery_report == raw
    internationalized = report(new_message_id(), report_type='"Global-Delivery-Status"')
    assert parse_message(internationalized).delivery_report == internationalized


@pytest.mark.parametrize(
    "raw",
    [
        ordinary("plain"),
        # A read receipt (RFC 8098) is a report too, but not about delivery.
        report("<x@example.test>", report_type="disposition-notification"),
        # A report forwarded as an attachment is the forward's content, not a report.
        forwarded(report("<x@example.test>")),
    ],
    ids=["ordinary", "read-receipt", "forwarded-report"],
)
def test_other_messages_carry_no_report(raw: bytes) -> None:
    assert parse_message(raw).delivery_report is None


def test_the_report_is_kept_as_far_as_parse_dsn_reads_it() -> None:
    assert MAX_DELIVERY_REPORT_BYTES == MAX_REPORT_BYTES
    raw = report(new_message_id(), returned_body=("x" * 76 + "\n") * 10_000)
    parsed = parse_message(raw)
    assert len(raw) > MAX_REPORT_BYTES
    assert parsed.delivery_report == raw[:MAX_REPORT_BYTES]


def test_only_a_permanent_failure_with_the_original_message_id_marks_an_entry() -> None:
    message_id = new_message_id()
    delayed = Failure(action="delayed", status="4.4.1", diagnostic="smtp; 451 try later")
    transient = Failure(status="4.2.2", diagnostic="smtp; 452 mailbox full")
    other = Failure(recipient="other@example.org", status="5.2.1", diagnostic="smtp; 550 off")

    assert permanent_bounce(report(message_id, delayed)) is None
    assert permanent_bounce(report(message_id, transient)) is None
    assert permanent_bounce(ordinary("plain")) is None
    assert permanent_bounce(report(message_id, delayed, Failure(), other)) == PermanentBounce(
        message_id_header=message_id,
        status="5.1.1",
        diagnostic=STORED_DIAGNOSTIC,
        recipients=("nobody@example.org", "other@example.org"),
    )
    headers_only = permanent_bounce(report(message_id, returned="text/rfc822-headers"))
    assert headers_only is not None
    assert headers_only.message_id_header == message_id


# --- through the sync --------------------------------------------------------------


async def add_entry(
    engine: SyncEngine,
    tenant_id: str,
    account_id: uuid.UUID,
    *,
    status: str = "sent",
    message_id: str | None = None,
) -> OutboxMessage:
    """An outbox entry as the sender leaves it, written straight into the outbox."""
    async with engine.sessionmaker.begin() as session:
        entry = await OutboxRepository(session, tenant_id).add(
            {
                "account_id": account_id,
                "status": status,
                "message_id_header": message_id or new_message_id(),
                "envelope_from": "sender@example.test",
                "envelope_to": ["nobody@example.org", "other@example.org"],
                "raw_mime": b"Subject: Quarterly numbers\r\n\r\nHello.\r\n",
                "subject": "Quarterly numbers",
                "attempts": 1,
                "last_smtp_code": 250,
                "last_smtp_reply": "2.0.0 Ok: queued as 8D2C1234567",
            }
        )
    assert entry is not None
    return entry


async def entry_state(engine: SyncEngine, entry: OutboxMessage) -> dict[str, Any]:
    async with engine.sessionmaker() as session:
        found = await session.scalar(select(OutboxMessage).where(OutboxMessage.id == entry.id))
    assert found is not None
    return {
        "status": found.status,
        "bounce_status": found.bounce_status,
        "bounce_diagnostic": found.bounce_diagnostic,
        "last_error": found.last_error,
        "updated_at": found.updated_at,
    }


async def changes(engine: SyncEngine, tenant_id: str, account_id: uuid.UUID) -> list[Change]:
    async with engine.sessionmaker() as session:
        rows = await session.scalars(
            select(Change)
            .where(Change.tenant_id == tenant_id, Change.account_id == account_id)
            .order_by(Change.seq)
        )
        return list(rows.all())


async def bounced_changes(engine: SyncEngine, target: SyncTarget) -> list[Change]:
    found = await changes(engine, target.tenant_id, target.account_id)
    return [change for change in found if change.type == "outbox.bounced"]


async def deliver(dovecot: DovecotServer, target: SyncTarget, *messages: bytes) -> None:
    await asyncio.to_thread(imap_client.append, dovecot, target.user, "INBOX", list(messages))


async def sync(engine: SyncEngine, target: SyncTarget, *, full: bool = False) -> None:
    await engine.sync_account(target.tenant_id, target.account_id, full=full)


SENT = {"status": "sent", "bounce_status": None, "bounce_diagnostic": None, "last_error": None}


def without_time(state: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in state.items() if key != "updated_at"}


async def test_a_permanent_failure_marks_the_sent_entry_bounced_once(
    engine: SyncEngine, target: SyncTarget, dovecot: DovecotServer
) -> None:
    entry = await add_entry(engine, target.tenant_id, target.account_id)
    await deliver(dovecot, target, report(entry.message_id_header))

    await sync(engine, target)

    state = await entry_state(engine, entry)
    assert without_time(state) == {
        **SENT,
        "status": "bounced",
        "bounce_status": "5.1.1",
        "bounce_diagnostic": STORED_DIAGNOSTIC,
    }
    [change] = await bounced_changes(engine, target)
    assert change.payload == {
        "outbox_id": str(entry.id),
        "status": "bounced",
        "message_id": entry.message_id_header,
        "attempts": 1,
        "smtp_code": 250,
        "smtp_reply": "2.0.0 Ok: queued as 8D2C1234567",
        "error": None,
        "next_attempt_at": None,
        "bounce_status": "5.1.1",
        "bounce_diagnostic": STORED_DIAGNOSTIC,
        "bounced_recipients": ["nobody@example.org"],
    }
    # The report itself is mail like any other.
    async with engine.sessionmaker() as session:
        [stored] = (
            await session.scalars(select(Message).where(Message.account_id == target.account_id))
        ).all()
    assert stored.subject == BOUNCE_SUBJECT
    assert stored.text_body is not None
    assert "could not\nbe delivered" in stored.text_body
    assert stored.parse_error is None

    before = await changes(engine, target.tenant_id, target.account_id)
    await sync(engine, target)
    assert await entry_state(engine, entry) == state
    after = await changes(engine, target.tenant_id, target.account_id)
    # Nothing changed, so the pass adds no change at all (not even `sync.completed`).
    assert [c.type for c in after if c.seq > before[-1].seq] == []

    # Refetched from scratch, the report is stored again and still marks nothing twice.
    await sync(engine, target, full=True)
    assert await entry_state(engine, entry) == state
    assert len(await bounced_changes(engine, target)) == 1


async def test_a_bounced_entry_keeps_its_first_report(
    engine: SyncEngine, target: SyncTarget, dovecot: DovecotServer
) -> None:
    entry = await add_entry(engine, target.tenant_id, target.account_id)
    second = Failure(recipient="other@example.org", status="5.2.2", diagnostic="smtp; 552 full")
    # Two reports in one batch, and one more in a later pass.
    await deliver(
        dovecot, target, report(entry.message_id_header), report(entry.message_id_header, second)
    )
    await sync(engine, target)
    await deliver(
        dovecot, target, report(entry.message_id_header, second, returned="text/rfc822-headers")
    )
    await sync(engine, target)

    state = await entry_state(engine, entry)
    assert (state["bounce_status"], state["bounce_diagnostic"]) == ("5.1.1", STORED_DIAGNOSTIC)
    assert len(await bounced_changes(engine, target)) == 1


async def test_a_report_with_only_the_returned_header_marks_the_entry(
    engine: SyncEngine, target: SyncTarget, dovecot: DovecotServer
) -> None:
    entry = await add_entry(engine, target.tenant_id, target.account_id)
    failure = Failure(status="5.7.1", diagnostic="smtp; 550 5.7.1 Message rejected as spam")
    await deliver(
        dovecot, target, report(entry.message_id_header, failure, returned="text/rfc822-headers")
    )

    await sync(engine, target)

    state = await entry_state(engine, entry)
    assert (state["status"], state["bounce_status"]) == ("bounced", "5.7.1")
    assert state["bounce_diagnostic"] == "550 5.7.1 Message rejected as spam"


async def test_a_delayed_report_leaves_the_entry_sent(
    engine: SyncEngine, target: SyncTarget, dovecot: DovecotServer
) -> None:
    entry = await add_entry(engine, target.tenant_id, target.account_id)
    delayed = Failure(
        action="delayed",
        status="4.4.1",
        diagnostic="smtp; 451 4.4.1 connect to mx.example.org: Connection timed out",
    )
    transient_failure = Failure(status="4.2.2", diagnostic="smtp; 452 4.2.2 Mailbox full")
    await deliver(
        dovecot,
        target,
        report(entry.message_id_header, delayed),
        report(entry.message_id_header, transient_failure),
    )

    await sync(engine, target)

    assert without_time(await entry_state(engine, entry)) == SENT
    assert await bounced_changes(engine, target) == []


@pytest.mark.parametrize("status", ["queued", "sending", "failed", "cancelled"])
async def test_an_entry_not_sent_is_left_to_its_own_outcome(
    engine: SyncEngine, target: SyncTarget, dovecot: DovecotServer, status: str
) -> None:
    entry = await add_entry(engine, target.tenant_id, target.account_id, status=status)
    await deliver(dovecot, target, report(entry.message_id_header))

    await sync(engine, target)

    assert without_time(await entry_state(engine, entry)) == {**SENT, "status": status}
    assert await bounced_changes(engine, target) == []


async def test_ordinary_mail_about_the_entry_changes_nothing(
    engine: SyncEngine, target: SyncTarget, dovecot: DovecotServer
) -> None:
    entry = await add_entry(engine, target.tenant_id, target.account_id)
    message_id = entry.message_id_header
    await deliver(
        dovecot,
        target,
        ordinary("Re: Quarterly numbers", in_reply_to=message_id),
        report(message_id, report_type="disposition-notification"),
        forwarded(report(message_id)),
    )

    await sync(engine, target)

    assert without_time(await entry_state(engine, entry)) == SENT
    assert await bounced_changes(engine, target) == []


async def test_a_report_never_reaches_another_accounts_or_tenants_entry(
    engine: SyncEngine,
    target: SyncTarget,
    dovecot: DovecotServer,
    client: httpx.AsyncClient,
    smtp_relay: SmtpRelay,
    make_token: TokenFactory,
    auth: dict[str, str],
) -> None:
    other_tenant = f"t-{secrets.token_hex(5)}"
    other_auth = {"Authorization": f"Bearer {make_token(other_tenant)}"}
    accounts: list[tuple[str, uuid.UUID]] = []
    for tenant_id, headers in ((other_tenant, other_auth), (target.tenant_id, auth)):
        user = dovecot.add_user(f"other-{secrets.token_hex(6)}", secrets.token_urlsafe(12))
        account_id = await register_account(client, headers, dovecot, smtp_relay, user)
        accounts.append((tenant_id, account_id))
    # The same Message-ID in each: only the target's own entry may be marked.
    message_id = new_message_id()
    others = [
        await add_entry(engine, tenant_id, account_id, message_id=message_id)
        for tenant_id, account_id in accounts
    ]
    own = await add_entry(engine, target.tenant_id, target.account_id, message_id=message_id)
    foreign = new_message_id()
    foreign_entries = [
        await add_entry(engine, tenant_id, account_id, message_id=foreign)
        for tenant_id, account_id in accounts
    ]
    await deliver(dovecot, target, report(message_id), report(foreign))

    await sync(engine, target)

    assert (await entry_state(engine, own))["status"] == "bounced"
    for entry in [*others, *foreign_entries]:
        assert without_time(await entry_state(engine, entry)) == SENT
    for tenant_id, account_id in accounts:
        found = await changes(engine, tenant_id, account_id)
        assert [c for c in found if c.type == "outbox.bounced"] == []
    assert len(await bounced_changes(engine, target)) == 1


async def test_a_report_above_the_size_cap_is_stored_without_being_read(
    app: FastAPI,
    settings: Settings,
    parser_pool: ParserPool,
    target: SyncTarget,
    dovecot: DovecotServer,
) -> None:
    state: Runtime = app.state.mailsvc
    capped = SyncEngine(
        sessionmaker=state.sessionmaker,
        logins=state.component(AccountLogins),
        settings=settings.model_copy(update={"sync_max_message_bytes": 64 * 1024}),
        parser=parser_pool,
    )
    entry = await add_entry(capped, target.tenant_id, target.account_id)
    large = report(entry.message_id_header, returned_body=("x" * 76 + "\n") * 1_500)
    assert len(large) > 64 * 1024
    await deliver(dovecot, target, large)

    await sync(capped, target)

    # Only its header and text parts were fetched: no report to read, and no harm.
    assert without_time(await entry_state(capped, entry)) == SENT
    async with capped.sessionmaker() as session:
        [stored] = (
            await session.scalars(select(Message).where(Message.account_id == target.account_id))
        ).all()
    assert stored.subject == BOUNCE_SUBJECT
