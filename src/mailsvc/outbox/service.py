"""Sending through the API: idempotent outbox entries, limits, and their status."""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime

import structlog
from redis.exceptions import RedisError
from sqlalchemy.ext.asyncio import AsyncSession

from mailsvc.account.repository import AccountRepository
from mailsvc.compose.build import build_message, new_message_id
from mailsvc.compose.model import AttachmentSpec
from mailsvc.errors import (
    ConflictError,
    NotFoundError,
    RateLimitedError,
)
from mailsvc.event.repository import ChangeRepository
from mailsvc.kit.db import after_commit
from mailsvc.kit.pagination import encode_cursor, read_cursor
from mailsvc.kit.resources import Resources
from mailsvc.models import Account, OutboxMessage
from mailsvc.outbox import schemas
from mailsvc.outbox.dispatch import OutboxDispatcher
from mailsvc.outbox.prepare import MessagePreparer, invalid
from mailsvc.outbox.repository import OutboxRepository
from mailsvc.outbox.sender import SEND_JOB, outbox_event, send_job_id

log = structlog.get_logger("mailsvc.outbox")


def outbox_out(entry: OutboxMessage) -> schemas.OutboxOut:
    return schemas.OutboxOut(
        id=entry.id,
        account_id=entry.account_id,
        draft_id=entry.draft_id,
        status=entry.status,  # type: ignore[arg-type]
        subject=entry.subject,
        message_id=entry.message_id_header,
        envelope_from=entry.envelope_from,
        envelope_to=list(entry.envelope_to),
        send_at=entry.send_at,
        next_attempt_at=entry.next_attempt_at if entry.status in ("queued", "sending") else None,
        attempts=entry.attempts,
        max_attempts=entry.max_attempts,
        last_attempt_at=entry.last_attempt_at,
        last_smtp_code=entry.last_smtp_code,
        last_smtp_reply=entry.last_smtp_reply,
        last_error=entry.last_error,
        sent_at=entry.sent_at,
        sent_copy_saved=entry.sent_copy_saved_at is not None,
        bounce_status=entry.bounce_status,
        bounce_diagnostic=entry.bounce_diagnostic,
        created_at=entry.created_at,
        updated_at=entry.updated_at,
    )


def request_hash(kind: str, body: str) -> str:
    """What an Idempotency-Key is bound to: the endpoint and its exact request."""
    return hashlib.sha256(f"{kind}\n{body}".encode()).hexdigest()


class OutboxService:
    """One tenant's sends. Never commits; sending starts after the commit."""

    def __init__(self, session: AsyncSession, tenant_id: str, resources: Resources) -> None:
        self._session = session
        self._tenant_id = tenant_id
        self._resources = resources
        self._outbox = OutboxRepository(session, tenant_id)

    async def send(
        self,
        fields: schemas.MessageFields,
        attachments: Sequence[AttachmentSpec],
        *,
        send_at: datetime | None,
        idempotency_key: str | None,
        fingerprint: str,
        dispatcher: OutboxDispatcher,
        draft_id: uuid.UUID | None = None,
    ) -> tuple[schemas.OutboxOut, bool]:
        """Queue a message; (entry, created). A repeated key returns the first entry.

        `dispatcher` starts the first attempt of an immediate send after the commit.
        """
        if idempotency_key is not None:
            earlier = await self._replay(idempotency_key, fingerprint)
            if earlier is not None:
                return earlier, False
        if send_at is not None and send_at.tzinfo is None:
            raise invalid("send_at", "needs a timezone, e.g. `2026-12-01T09:00:00Z`")
        account = await self._account(fields.account_id)
        await self._check_send_limit(account)
        prepared = await MessagePreparer(self._session, self._tenant_id, self._resources).prepare(
            account, fields, attachments
        )
        composition = prepared.composition
        built = await asyncio.to_thread(
            build_message,
            composition,
            message_id=new_message_id(composition.from_.address),
            date=datetime.now(UTC),
        )
        limit = self._resources.settings.send_max_message_bytes
        if len(built.raw) > limit:
            raise invalid("attachments", f"the message would be larger than {limit} bytes")
        now = datetime.now(UTC)
        due = send_at if send_at is not None and send_at > now else now
        entry = await self._outbox.add(
            {
                "account_id": account.id,
                "draft_id": draft_id,
                "send_at": send_at,
                "next_attempt_at": due,
                "max_attempts": self._resources.settings.send_max_attempts,
                "message_id_header": built.message_id,
                "envelope_from": built.envelope_from,
                "envelope_to": list(built.envelope_to),
                "raw_mime": built.raw,
                "idempotency_key": idempotency_key,
                "request_hash": fingerprint if idempotency_key is not None else None,
                "answers_message_id": prepared.answers_message_id,
                "subject": built.subject,
            }
        )
        if entry is None:
            # Another request with the same key committed first.
            assert idempotency_key is not None
            earlier = await self._replay(idempotency_key, fingerprint)
            assert earlier is not None
            return earlier, False
        await ChangeRepository(self._session, self._tenant_id).append(
            account.id, *outbox_event(entry)
        )
        self._start_after_commit(entry.id, due if due > now else None, dispatcher)
        return outbox_out(entry), True

    async def get(self, entry_id: uuid.UUID) -> schemas.OutboxOut:
        entry = await self._outbox.get(entry_id)
        if entry is None:
            raise NotFoundError("outbox entry not found", code="outbox_not_found")
        return outbox_out(entry)

    async def page(
        self,
        *,
        account_id: uuid.UUID | None,
        status: str | None,
        cursor: str | None,
        limit: int,
    ) -> schemas.OutboxPage:
        after = read_cursor(
            cursor,
            lambda position: (datetime.fromisoformat(position["t"]), uuid.UUID(position["i"])),
        )
        rows = await self._outbox.page(
            account_id=account_id, status=status, after=after, limit=limit + 1
        )
        next_cursor = None
        if len(rows) > limit:
            last = rows[limit - 1]
            next_cursor = encode_cursor({"t": last.created_at.isoformat(), "i": str(last.id)})
        return schemas.OutboxPage(
            items=[outbox_out(row) for row in rows[:limit]], next_cursor=next_cursor
        )

    async def cancel(self, entry_id: uuid.UUID) -> schemas.OutboxOut:
        entry = await self._outbox.cancel(entry_id)
        if entry is None:
            current = await self._outbox.get(entry_id)
            if current is None:
                raise NotFoundError("outbox entry not found", code="outbox_not_found")
            raise ConflictError(
                f"only a queued message can be cancelled; this one is {current.status}",
                code="outbox_not_cancellable",
            )
        await ChangeRepository(self._session, self._tenant_id).append(
            entry.account_id, *outbox_event(entry)
        )
        return outbox_out(entry)

    async def retry(
        self, entry_id: uuid.UUID, *, dispatcher: OutboxDispatcher
    ) -> schemas.OutboxOut:
        """Attempt an entry now: a `queued` one (scheduled, or waiting for a retry)
        without waiting for its time, a `failed` one again with a fresh budget of
        attempts. The same bytes and Message-ID go out, so a retry after an attempt
        that may have gone through unseen still looks in the Sent mailbox first.

        `dispatcher` starts the attempt after the commit, as for an immediate send;
        the entry's job already scheduled finds it taken or done and does nothing.
        """
        entry = await self._outbox.retry_now(
            entry_id, more_attempts=self._resources.settings.send_max_attempts
        )
        if entry is None:
            current = await self._outbox.get(entry_id)
            if current is None:
                raise NotFoundError("outbox entry not found", code="outbox_not_found")
            raise ConflictError(
                f"only a queued or failed message can be retried; this one is {current.status}",
                code="outbox_not_retryable",
            )
        await ChangeRepository(self._session, self._tenant_id).append(
            entry.account_id, *outbox_event(entry)
        )
        self._start_after_commit(entry.id, None, dispatcher)
        return outbox_out(entry)

    async def _replay(self, key: str, fingerprint: str) -> schemas.OutboxOut | None:
        earlier = await self._outbox.by_idempotency_key(key)
        if earlier is None:
            return None
        if earlier.request_hash != fingerprint:
            raise ConflictError(
                "this Idempotency-Key was used with another request",
                code="idempotency_key_reused",
            )
        return outbox_out(earlier)

    async def _account(self, account_id: uuid.UUID) -> Account:
        account = await AccountRepository(self._session, self._tenant_id).get(account_id)
        if account is None:
            raise invalid("account_id", "no such account")
        return account

    async def _check_send_limit(self, account: Account) -> None:
        decision = await self._resources.send_limiter.hit(str(account.id))
        if not decision.allowed:
            raise RateLimitedError(
                "the account's send limit is reached",
                code="send_limit_exceeded",
                headers={"Retry-After": str(max(decision.reset_after, 1))},
            )

    def _start_after_commit(
        self, entry_id: uuid.UUID, later: datetime | None, dispatcher: OutboxDispatcher
    ) -> None:
        tenant_id, arq = self._tenant_id, self._resources.arq

        async def start() -> None:
            if later is None:
                dispatcher.start(tenant_id, entry_id)
                return
            try:
                await arq.enqueue_job(
                    SEND_JOB,
                    tenant_id,
                    str(entry_id),
                    _job_id=send_job_id(entry_id, 1),
                    _defer_until=later,
                )
            except RedisError as exc:
                # The entry is committed: answering 503 now would invite a second send
                # of it. Its job is re-created from the row by the worker's outbox sweep.
                log.warning("outbox.enqueue_failed", outbox_id=str(entry_id), error=str(exc))

        after_commit(self._session, start)
