"""One attempt at an outbox entry: claim it, deliver it, record what happened.

Runs in the api process for immediate sends and in arq workers for scheduled sends
and retries; the claim (a row lock and a lease) lets exactly one of them attempt an
entry at a time, so a job run twice, or a sweep racing a retry, sends once.

    claim ── not due, ended, or held by a live lease ─────────── nothing to do
      │ verify_sent (last reply lost, or its process died)
      ├── the Message-ID is in the Sent mailbox ─────────────── sent
      ▼
    deliver ── DELIVERED ── sent; copy to Sent; original flagged \\Answered
            ── RETRY ────── queued, next attempt after a backoff (or failed at the limit)
            ── AMBIGUOUS ── as RETRY, and the next attempt verifies first
            ── FAILED ───── failed with the server's reply
"""

from __future__ import annotations

import random
import time
import uuid
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from arq.connections import ArqRedis
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from mailsvc.account.logins import AccountLogins
from mailsvc.account.repository import AccountRepository
from mailsvc.config import Settings
from mailsvc.event.repository import ChangeRepository
from mailsvc.imap.connection import ImapConnection
from mailsvc.imap.errors import ImapCommandError, ImapConnectError
from mailsvc.imap.mailboxes import mailbox_on_server
from mailsvc.jobs import enqueue_sync
from mailsvc.kit.mailserver import MailServer, tls_context
from mailsvc.kit.outage import retry_while_database_unreachable
from mailsvc.message.repository import MessageRepository
from mailsvc.models import Account, OutboxMessage
from mailsvc.ops.metrics import observe_outbox_attempt
from mailsvc.outbox.delivery import DeliveryResult, Outcome, deliver
from mailsvc.outbox.repository import OutboxRepository

log = structlog.get_logger("mailsvc.outbox")

SEND_JOB = "send_outbox"


def send_job_id(entry_id: uuid.UUID, attempt: int) -> str:
    """One arq job per entry and attempt number: a second enqueue is a no-op."""
    return f"outbox:{entry_id}:{attempt}"


def outbox_event(entry: OutboxMessage) -> tuple[str, dict[str, Any]]:
    """The `changes` row for an entry's current status."""
    return (
        f"outbox.{entry.status}",
        {
            "outbox_id": str(entry.id),
            "status": entry.status,
            "message_id": entry.message_id_header,
            "attempts": entry.attempts,
            "smtp_code": entry.last_smtp_code,
            "smtp_reply": entry.last_smtp_reply,
            "error": entry.last_error,
            "next_attempt_at": entry.next_attempt_at.isoformat()
            if entry.status == "queued"
            else None,
        },
    )


def backoff(attempts: int, settings: Settings) -> timedelta:
    """Exponential, capped, with +-20% jitter so retries of many sends spread out."""
    base = settings.send_retry_base_seconds * 2 ** max(attempts - 1, 0)
    seconds = min(base, settings.send_retry_max_seconds) * random.uniform(0.8, 1.2)
    return timedelta(seconds=seconds)


@dataclass(frozen=True, slots=True)
class _Attempt:
    """A claimed entry (with its bytes) and its account."""

    entry: OutboxMessage
    account: Account
    verify_sent: bool
    # When this process's claim ends (`time.monotonic()`, a margin short of the lease).
    lease_ends: float


class OutboxSender:
    """Attempts outbox entries; shared by the api process and the arq worker."""

    def __init__(
        self,
        *,
        sessionmaker: async_sessionmaker[AsyncSession],
        logins: AccountLogins,
        settings: Settings,
        arq: ArqRedis,
    ) -> None:
        self._sessionmaker = sessionmaker
        self._logins = logins
        self._settings = settings
        self._arq = arq

    async def attempt(self, tenant_id: str, entry_id: uuid.UUID) -> str | None:
        """Run one attempt if the entry is due; its resulting status, or None."""
        attempt = await self._claim(tenant_id, entry_id)
        if attempt is None:
            return None
        entry = attempt.entry
        if attempt.verify_sent:
            found = await self._in_sent_mailbox(attempt.account, entry)
            if found is None:
                # Sending blind could send it twice: try the check again later.
                result = DeliveryResult(
                    outcome=Outcome.AMBIGUOUS,
                    error="an earlier attempt may have been delivered, and the Sent "
                    "mailbox could not be checked",
                )
                return await self._record(tenant_id, attempt, result)
            if found:
                log.info("outbox.found_in_sent", outbox_id=str(entry.id))
                result = DeliveryResult(outcome=Outcome.DELIVERED, error=None)
                status = await self._record(tenant_id, attempt, result)
                if status == "sent":
                    await self._file_copy(
                        tenant_id, attempt.account, entry, flag_original=True, filed=True
                    )
                return status
        addresses = [entry.envelope_from, *entry.envelope_to]
        account = attempt.account

        async def login(rejected: MailServer | None) -> MailServer:
            return await self._logins.server(account, "smtp", rejected=rejected)

        result = await deliver(
            login,
            envelope_from=entry.envelope_from,
            recipients=entry.envelope_to,
            message=entry.raw_mime,
            io_timeout=self._settings.mail_connect_timeout_seconds,
            tls=tls_context(self._settings.mail_tls_ca_file),
            smtputf8=not all(address.isascii() for address in addresses),
        )
        log.info(
            "outbox.attempt",
            outbox_id=str(entry.id),
            attempt=entry.attempts,
            outcome=result.outcome.value,
            smtp_code=result.reply.code if result.reply else None,
        )
        status = await self._record(tenant_id, attempt, result)
        if status == "sent":
            await self._file_copy(tenant_id, attempt.account, entry, flag_original=True)
        return status

    async def _claim(self, tenant_id: str, entry_id: uuid.UUID) -> _Attempt | None:
        lease = timedelta(seconds=self._settings.send_lease_seconds)
        # Measured before the claim, and a tenth short: clocks of hosts differ.
        lease_ends = time.monotonic() + lease.total_seconds() * 0.9
        async with self._sessionmaker() as session, session.begin():
            claim = await OutboxRepository(session, tenant_id).claim(entry_id, lease=lease)
            if claim is None:
                return None
            account = await AccountRepository(session, tenant_id).get(claim.entry.account_id)
            if account is None:
                return None  # the account is being deleted, and its outbox with it
            await ChangeRepository(session, tenant_id).append(
                account.id, *outbox_event(claim.entry)
            )
            return _Attempt(
                entry=claim.entry,
                account=account,
                verify_sent=claim.verify_sent,
                lease_ends=lease_ends,
            )

    async def _record(
        self, tenant_id: str, attempt: _Attempt, result: DeliveryResult
    ) -> str | None:
        entry = attempt.entry
        values: dict[str, Any] = {
            "last_smtp_code": result.reply.code if result.reply else None,
            "last_smtp_reply": result.reply.text if result.reply else None,
            "last_error": result.error,
        }
        now = datetime.now(UTC)
        retry_at: datetime | None = None
        delay: timedelta | None = None
        if result.outcome is Outcome.DELIVERED:
            values.update(status="sent", sent_at=now, verify_sent=False)
        elif result.outcome is Outcome.FAILED or entry.attempts >= entry.max_attempts:
            # A failed entry may be retried (OutboxService.retry): if its last attempt
            # may have gone through unseen, that retry must look in Sent first.
            values.update(status="failed", verify_sent=result.outcome is Outcome.AMBIGUOUS)
        else:
            delay = backoff(entry.attempts, self._settings)
            retry_at = now + delay
            values.update(
                status="queued",
                next_attempt_at=retry_at,
                verify_sent=result.outcome is Outcome.AMBIGUOUS,
            )

        async def finish() -> OutboxMessage | None:
            async with self._sessionmaker() as session, session.begin():
                updated = await OutboxRepository(session, tenant_id).finish(entry.id, values)
                if updated is not None:
                    await ChangeRepository(session, tenant_id).append(
                        attempt.account.id, *outbox_event(updated)
                    )
                return updated

        # The SMTP server may have taken the message: if PostgreSQL is restarting now,
        # waiting for it (within the lease, which fences `finish`) is what keeps the
        # entry from being retaken and sent a second time.
        updated = await retry_while_database_unreachable(
            finish, until=attempt.lease_ends, what="outbox.record"
        )
        if updated is None:
            return None  # the lease ran out and another process took over
        # Counted once recorded: an attempt whose lease ran out is the taker's to count.
        observe_outbox_attempt(
            outcome="retry" if delay is not None else str(values["status"]),
            retry_delay_seconds=delay.total_seconds() if delay is not None else None,
        )
        if retry_at is not None:
            await self._arq.enqueue_job(
                SEND_JOB,
                tenant_id,
                str(entry.id),
                _job_id=send_job_id(entry.id, entry.attempts + 1),
                _defer_until=retry_at,
            )
        return str(values["status"])

    async def file_copy(self, tenant_id: str, entry_id: uuid.UUID) -> bool:
        """Try again to file a sent message's copy whose filing failed; whether it did."""
        async with self._sessionmaker() as session:
            entry = await OutboxRepository(session, tenant_id).with_message(entry_id)
            if entry is None or entry.sent_copy_saved_at is not None:
                return False
            account = await AccountRepository(session, tenant_id).get(entry.account_id)
        if account is None or entry.status not in ("sent", "bounced"):
            return False
        return await self._file_copy(tenant_id, account, entry, flag_original=False)

    async def _file_copy(
        self,
        tenant_id: str,
        account: Account,
        entry: OutboxMessage,
        *,
        flag_original: bool,
        filed: bool = False,
    ) -> bool:
        """Append the message to the Sent mailbox (unless the provider files it, or it
        is there already: `filed`), and flag the original of a reply answered. A
        failure is recorded for the sweep to try again (outbox/dispatch.py), never
        turned into a second send."""
        saved = filed or (account.send_options or {}).get("sent_copy") == "provider"
        if saved:
            await self._set(tenant_id, entry.id, sent_copy_saved_at=datetime.now(UTC))
            if not flag_original:
                return True
        try:
            async with self._imap(account) as connection:
                if not saved and (sent := await mailbox_on_server(connection, "sent")):
                    await connection.append(sent, entry.raw_mime, flags=["\\Seen"])
                    saved = True
                    # Recorded before anything else can fail, so no try appends twice.
                    await self._set(tenant_id, entry.id, sent_copy_saved_at=datetime.now(UTC))
                if flag_original:
                    await self._flag_answered(tenant_id, entry, connection)
        except (ImapConnectError, ImapCommandError) as exc:
            log.warning("outbox.after_sent_failed", outbox_id=str(entry.id), error=str(exc))
            await self._set(
                tenant_id,
                entry.id,
                last_error=f"sent; {'flagging the original' if saved else 'filing the copy'} "
                f"failed: {exc}",
                sent_copy_attempts=OutboxMessage.sent_copy_attempts + (0 if saved else 1),
            )
        # The copy and the flag reach the API through the account's next sync.
        await enqueue_sync(self._arq, tenant_id=tenant_id, account_id=account.id)
        return saved

    async def _set(self, tenant_id: str, entry_id: uuid.UUID, **values: Any) -> None:
        async with self._sessionmaker() as session, session.begin():
            await OutboxRepository(session, tenant_id).set_values(entry_id, values)

    async def _flag_answered(
        self, tenant_id: str, entry: OutboxMessage, connection: ImapConnection
    ) -> None:
        if entry.answers_message_id is None:
            return
        async with self._sessionmaker() as session:
            messages = MessageRepository(session, tenant_id)
            original = await messages.get(entry.answers_message_id)
            mailbox = None if original is None else await messages.mailbox(original.mailbox_id)
        if original is None or mailbox is None:
            return
        selected = await connection.select(mailbox.name)
        if selected.uidvalidity == original.uidvalidity:
            await connection.uid_store(str(original.uid), "+FLAGS", ["\\Answered"])

    async def _in_sent_mailbox(self, account: Account, entry: OutboxMessage) -> bool | None:
        """Whether the Sent mailbox holds this Message-ID; None when it cannot tell.

        Only a provider that files sent mail itself can have it there after a lost
        reply; with any other, the check finds nothing and the message is sent again.
        """
        try:
            async with self._imap(account) as connection:
                sent = await mailbox_on_server(connection, "sent")
                if sent is None:
                    return False
                await connection.select(sent, readonly=True)
                message_id = entry.message_id_header.replace("\\", "").replace('"', "")
                found = await connection.uid_search(f'HEADER Message-ID "{message_id}"')
                return bool(found)
        except (ImapConnectError, ImapCommandError) as exc:
            log.warning("outbox.sent_check_failed", outbox_id=str(entry.id), error=str(exc))
            return None

    def _imap(self, account: Account) -> AbstractAsyncContextManager[ImapConnection]:
        return self._logins.imap_session(account)
