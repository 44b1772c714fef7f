"""Draft behaviour: save, read, delete, attach files, and send. Never commits.

The server copy in the Drafts mailbox (`draft.mirror`) is refreshed after the
commit of each change, and removed after the commit of a deletion or a send.
"""

from __future__ import annotations

import functools
import uuid
from typing import Protocol

from sqlalchemy.ext.asyncio import AsyncSession

from mailsvc.account.repository import AccountRepository
from mailsvc.compose.model import AttachmentSpec
from mailsvc.compose.validate import CompositionError, check_attachment
from mailsvc.draft import schemas
from mailsvc.draft.checks import DraftChecker
from mailsvc.draft.mirror import DraftMirror, attachment_specs, saves_drafts
from mailsvc.draft.repository import DraftRepository, server_copy
from mailsvc.errors import (
    FieldError,
    NotFoundError,
    PayloadTooLargeError,
    UnprocessableError,
)
from mailsvc.kit.db import after_commit
from mailsvc.kit.pagination import encode_cursor, read_cursor
from mailsvc.kit.resources import Resources
from mailsvc.models import Account, Draft
from mailsvc.models.message import Address
from mailsvc.outbox.dispatch import OutboxDispatcher
from mailsvc.outbox.prepare import invalid
from mailsvc.outbox.repository import OutboxRepository
from mailsvc.outbox.schemas import AddressIn, MessageFields, OutboxOut, ScheduleRequest
from mailsvc.outbox.service import OutboxService, outbox_out, request_hash

MAX_ATTACHMENTS = 100
"""Attachments per draft, as many as `POST /api/send` takes."""
READ_CHUNK_BYTES = 64 * 1024


class Upload(Protocol):
    """An uploaded file (FastAPI's `UploadFile` is one)."""

    @property
    def filename(self) -> str | None: ...

    @property
    def content_type(self) -> str | None: ...

    async def read(self, size: int = -1) -> bytes: ...


def _address(stored: Address) -> AddressIn:
    return AddressIn(name=stored.get("name"), address=stored.get("address") or "")


def draft_out(draft: Draft) -> schemas.DraftOut:
    return schemas.DraftOut(
        id=draft.id,
        account_id=draft.account_id,
        from_=None if draft.from_ is None else _address(draft.from_),
        to=[_address(a) for a in draft.to],
        cc=[_address(a) for a in draft.cc],
        bcc=[_address(a) for a in draft.bcc],
        reply_to=[_address(a) for a in draft.reply_to],
        subject=draft.subject,
        text=draft.text_body,
        html=draft.html_body,
        headers=dict(draft.headers),
        in_reply_to=draft.in_reply_to_message_id,
        quote_original=draft.quote_original,
        forward_of=draft.forward_of_message_id,
        forward_inline=draft.forward_inline,
        attachments=[schemas.DraftAttachmentOut.model_validate(a) for a in draft.attachments],
        created_at=draft.created_at,
        updated_at=draft.updated_at,
    )


def _not_found() -> NotFoundError:
    return NotFoundError("draft not found", code="draft_not_found")


async def _read_capped(upload: Upload, *, room: int, limit: int) -> bytes:
    """The upload's bytes, read in chunks; 413 as soon as they exceed `room`."""
    chunks: list[bytes] = []
    size = 0
    while chunk := await upload.read(READ_CHUNK_BYTES):
        size += len(chunk)
        if size > room:
            raise PayloadTooLargeError(
                f"a draft's attachments may hold at most {limit} bytes in all",
                code="attachment_too_large",
            )
        chunks.append(chunk)
    return b"".join(chunks)


def _as_draft_errors(exc: UnprocessableError) -> UnprocessableError:
    """A check at send names the draft's fields, which are not in this request's body."""
    errors = [
        FieldError(field=error.field.replace("body.", "draft.", 1), message=error.message)
        if error.field != "body.send_at"
        else error
        for error in exc.errors or []
    ]
    return UnprocessableError(exc.detail, code=exc.code, errors=errors)


class DraftService:
    """One tenant's drafts."""

    def __init__(self, session: AsyncSession, tenant_id: str, resources: Resources) -> None:
        self._session = session
        self._tenant_id = tenant_id
        self._resources = resources
        self._drafts = DraftRepository(session, tenant_id)
        self._checker = DraftChecker(
            session, tenant_id, recipient_limit=resources.settings.send_max_recipients
        )

    async def get(self, draft_id: uuid.UUID) -> schemas.DraftOut:
        return draft_out(await self._draft(draft_id))

    async def page(
        self, *, account_id: uuid.UUID | None, cursor: str | None, limit: int
    ) -> schemas.DraftPage:
        before = read_cursor(cursor, lambda position: uuid.UUID(str(position["before"])))
        rows = await self._drafts.page(account_id=account_id, before=before, limit=limit + 1)
        next_cursor = (
            encode_cursor({"before": str(rows[limit - 1].id)}) if len(rows) > limit else None
        )
        return schemas.DraftPage(
            items=[draft_out(d) for d in rows[:limit]], next_cursor=next_cursor
        )

    async def create(self, body: schemas.DraftIn) -> schemas.DraftOut:
        account = await self._account(body.account_id)
        values = await self._checker.values(account, body)
        draft = await self._drafts.add({"account_id": account.id, **values})
        self._mirror_after_commit(draft, account)
        return draft_out(draft)

    async def save(self, body: schemas.DraftSave) -> tuple[schemas.DraftOut, bool]:
        """Create a draft, or replace one when `body.id` is given; (draft, created)."""
        if body.id is None:
            return await self.create(body), True
        return await self.replace(body.id, body), False

    async def replace(self, draft_id: uuid.UUID, body: schemas.DraftIn) -> schemas.DraftOut:
        current = await self._draft(draft_id, for_update=True)
        if body.account_id != current.account_id:
            raise invalid("account_id", "a draft stays with its account; create a new draft")
        account = await self._account(current.account_id)
        values = await self._checker.values(account, body, current=current)
        draft = await self._drafts.update(current.id, values)
        self._mirror_after_commit(draft, account)
        return draft_out(draft)

    async def delete(self, draft_id: uuid.UUID) -> None:
        draft = await self._draft(draft_id, for_update=True)
        await self._drafts.delete(draft.id)
        self._remove_copy_after_commit(draft)

    async def add_attachment(
        self, draft_id: uuid.UUID, upload: Upload, *, content_id: str | None
    ) -> schemas.DraftAttachmentOut:
        """Attach an uploaded file; the row lock keeps parallel uploads under the cap."""
        draft = await self._draft(draft_id, for_update=True)
        spec = self._checked_upload(draft, upload, content_id)
        limit = self._resources.settings.send_max_message_bytes
        used = sum(attachment.size for attachment in draft.attachments)
        content = await _read_capped(upload, room=limit - used, limit=limit)
        attachment = await self._drafts.add_attachment(
            {
                "draft_id": draft.id,
                "filename": spec.filename,
                "content_type": spec.content_type,
                "size": len(content),
                "content_id": spec.content_id,
                "is_inline": spec.inline,
                "content": content,
            }
        )
        await self._drafts.touch(draft.id)
        self._mirror_after_commit(draft, await self._account(draft.account_id))
        return schemas.DraftAttachmentOut.model_validate(attachment)

    async def delete_attachment(self, draft_id: uuid.UUID, attachment_id: uuid.UUID) -> None:
        draft = await self._draft(draft_id, for_update=True)
        if not await self._drafts.delete_attachment(draft.id, attachment_id):
            raise NotFoundError("attachment not found", code="attachment_not_found")
        await self._drafts.touch(draft.id)
        self._mirror_after_commit(draft, await self._account(draft.account_id))

    async def send(
        self,
        draft_id: uuid.UUID,
        schedule: ScheduleRequest,
        *,
        idempotency_key: str | None,
        dispatcher: OutboxDispatcher,
    ) -> tuple[OutboxOut, bool]:
        """Queue the draft's message and delete the draft; (entry, created).

        The key is bound to the draft's id and version and to the schedule. A replay
        after the send finds the draft gone and answers with the first entry.
        """
        # Locked, so that two sends of one draft queue it once: the second finds it gone.
        draft = await self._drafts.get(draft_id, content=True, for_update=True)
        if draft is None:
            earlier = await self._earlier_send(draft_id, idempotency_key)
            if earlier is None:
                raise _not_found()
            return earlier, False
        fingerprint = request_hash(
            "draft-send",
            f"{draft.id}\n{draft.updated_at.isoformat()}\n{schedule.model_dump_json()}",
        )
        outbox = OutboxService(self._session, self._tenant_id, self._resources)
        try:
            entry, created = await outbox.send(
                await self._message_fields(draft),
                attachment_specs(draft),
                send_at=schedule.send_at,
                idempotency_key=idempotency_key,
                fingerprint=fingerprint,
                dispatcher=dispatcher,
                draft_id=draft.id,
            )
        except UnprocessableError as exc:
            raise _as_draft_errors(exc) from exc
        if created:
            await self._drafts.delete(draft.id)
            self._remove_copy_after_commit(draft)
        return entry, created

    async def _earlier_send(self, draft_id: uuid.UUID, key: str | None) -> OutboxOut | None:
        """The entry an earlier send of this draft made with `key`, once the draft is gone.

        The draft's version cannot be compared any more; the entry's `draft_id` can
        while it is set (deleting the draft clears it).
        """
        if key is None:
            return None
        earlier = await OutboxRepository(self._session, self._tenant_id).by_idempotency_key(key)
        if earlier is None or earlier.draft_id not in (None, draft_id):
            return None
        return outbox_out(earlier)

    async def _message_fields(self, draft: Draft) -> MessageFields:
        in_reply_to = draft.in_reply_to_message_id
        if in_reply_to is None and draft.in_reply_to is not None:
            # The original's row was replaced since the draft was saved: find it again.
            in_reply_to = await self._drafts.message_for_reply(draft.account_id, draft.in_reply_to)
        return MessageFields(
            account_id=draft.account_id,
            from_=None if draft.from_ is None else _address(draft.from_),
            to=[_address(a) for a in draft.to],
            cc=[_address(a) for a in draft.cc],
            bcc=[_address(a) for a in draft.bcc],
            reply_to=[_address(a) for a in draft.reply_to],
            subject=draft.subject,
            text=draft.text_body,
            html=draft.html_body,
            headers=dict(draft.headers),
            in_reply_to=in_reply_to,
            quote_original=draft.quote_original,
            forward_of=draft.forward_of_message_id,
            forward_inline=draft.forward_inline,
        )

    @staticmethod
    def _checked_upload(draft: Draft, upload: Upload, content_id: str | None) -> AttachmentSpec:
        if len(draft.attachments) >= MAX_ATTACHMENTS:
            raise invalid("file", f"a draft holds at most {MAX_ATTACHMENTS} attachments")
        media_type = (upload.content_type or "").split(";", 1)[0].strip()
        try:
            spec = check_attachment(
                "file",
                AttachmentSpec(
                    filename=upload.filename or "",
                    content_type=media_type or "application/octet-stream",
                    content=b"",
                    content_id=content_id,
                    inline=content_id is not None,
                ),
            )
        except CompositionError as exc:
            field = "content_id" if exc.field == "file.content_id" else exc.field
            raise invalid(field, exc.message) from exc
        if spec.content_id is not None and spec.content_id in {
            a.content_id for a in draft.attachments
        }:
            raise invalid("content_id", "another attachment of the draft has it")
        return spec

    async def _draft(self, draft_id: uuid.UUID, *, for_update: bool = False) -> Draft:
        draft = await self._drafts.get(draft_id, for_update=for_update)
        if draft is None:
            raise _not_found()
        return draft

    async def _account(self, account_id: uuid.UUID) -> Account:
        account = await AccountRepository(self._session, self._tenant_id).get(account_id)
        if account is None:
            raise invalid("account_id", "no such account")
        return account

    def _mirror_after_commit(self, draft: Draft, account: Account) -> None:
        if saves_drafts(account) or server_copy(draft) is not None:
            mirror = DraftMirror(self._resources, self._tenant_id)
            after_commit(self._session, functools.partial(mirror.refresh, draft.id))

    def _remove_copy_after_commit(self, draft: Draft) -> None:
        copy = server_copy(draft)
        if copy is not None:
            mirror = DraftMirror(self._resources, self._tenant_id)
            after_commit(self._session, functools.partial(mirror.remove, draft.account_id, copy))
