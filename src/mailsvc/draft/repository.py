"""SQL of drafts and their attachments."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.orm import selectinload, undefer

from mailsvc.kit.db import Uid, utcnow
from mailsvc.kit.repository import TenantRepository
from mailsvc.models import Draft, DraftAttachment, Message


@dataclass(frozen=True, slots=True)
class ServerCopy:
    """Where a draft's copy sits in the account's Drafts mailbox."""

    uidvalidity: int
    uid: int


def server_copy(draft: Draft) -> ServerCopy | None:
    if draft.imap_uidvalidity is None or draft.imap_uid is None:
        return None
    return ServerCopy(uidvalidity=draft.imap_uidvalidity, uid=draft.imap_uid)


class DraftRepository(TenantRepository):
    """One tenant's drafts."""

    async def get(
        self, draft_id: uuid.UUID, *, content: bool = False, for_update: bool = False
    ) -> Draft | None:
        """A draft with its attachments (their bytes too when `content`)."""
        loader = selectinload(Draft.attachments)
        if content:
            loader = loader.options(undefer(DraftAttachment.content))
        statement = (
            self.scoped.select(Draft)
            .where(Draft.id == draft_id)
            .options(loader)
            .execution_options(populate_existing=True)
        )
        if for_update:
            statement = statement.with_for_update(of=Draft)
        found: Draft | None = await self.session.scalar(statement)
        return found

    async def page(
        self, *, account_id: uuid.UUID | None, before: uuid.UUID | None, limit: int
    ) -> Sequence[Draft]:
        """Up to `limit` drafts, newest first (ids are time-ordered), older than `before`."""
        statement = self.scoped.select(Draft)
        if account_id is not None:
            statement = statement.where(Draft.account_id == account_id)
        if before is not None:
            statement = statement.where(Draft.id < before)
        result = await self.session.scalars(
            statement.options(selectinload(Draft.attachments))
            .order_by(Draft.id.desc())
            .limit(limit)
        )
        return result.all()

    async def add(self, values: dict[str, Any]) -> Draft:
        draft = await self.scoped.add(Draft(**values))
        return await self._reloaded(draft.id)

    async def update(self, draft_id: uuid.UUID, values: dict[str, Any]) -> Draft:
        """Set `values` (and `updated_at`) on a draft the caller has locked."""
        await self.session.execute(
            self.scoped.update(Draft)
            .where(Draft.id == draft_id)
            .values(**values, updated_at=utcnow())
        )
        return await self._reloaded(draft_id)

    async def touch(self, draft_id: uuid.UUID) -> None:
        """Mark a draft changed (its attachments changed): a new version to mirror."""
        await self.session.execute(
            self.scoped.update(Draft).where(Draft.id == draft_id).values(updated_at=utcnow())
        )

    async def delete(self, draft_id: uuid.UUID) -> None:
        """Delete a draft; its attachments go with it (foreign key cascade)."""
        await self.session.execute(self.scoped.delete(Draft).where(Draft.id == draft_id))

    async def record_server_copy(
        self, draft_id: uuid.UUID, *, version: datetime, copy: ServerCopy | None
    ) -> tuple[bool, ServerCopy | None]:
        """Store `copy` as the draft's server copy if the draft is still at `version`.

        Returns (stored, obsolete): the copy that nothing refers to any more, i.e. the
        one replaced, or `copy` itself when the draft changed or went meanwhile.
        """
        draft = await self.session.scalar(
            self.scoped.select(Draft)
            .where(Draft.id == draft_id)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
        if draft is None or draft.updated_at != version:
            return False, copy
        previous = server_copy(draft)
        if previous == copy:
            return True, None
        await self.session.execute(
            self.scoped.update(Draft)
            .where(Draft.id == draft_id)
            .values(
                imap_uidvalidity=None if copy is None else Uid(copy.uidvalidity),
                imap_uid=None if copy is None else Uid(copy.uid),
                # Not a change of the draft: keep its version (no `onupdate`).
                updated_at=Draft.updated_at,
            )
        )
        return True, previous

    async def add_attachment(self, values: dict[str, Any]) -> DraftAttachment:
        return await self.scoped.add(DraftAttachment(**values))

    async def delete_attachment(self, draft_id: uuid.UUID, attachment_id: uuid.UUID) -> bool:
        """Delete one attachment of a draft; False when the draft has no such attachment."""
        result = await self.session.execute(
            self.scoped.delete(DraftAttachment)
            .where(
                DraftAttachment.draft_id == draft_id,
                DraftAttachment.id == attachment_id,
            )
            .returning(DraftAttachment.id)
        )
        return result.first() is not None

    async def message_for_reply(
        self, account_id: uuid.UUID, message_id_header: str
    ) -> uuid.UUID | None:
        """A message of the account with this Message-ID: the original of a reply
        whose row was replaced (a mailbox's UIDVALIDITY changed) since it was saved."""
        found: uuid.UUID | None = await self.session.scalar(
            self.scoped.select(Message.id)
            .where(
                Message.account_id == account_id,
                Message.message_id_header == message_id_header,
            )
            .order_by(Message.internal_date.desc(), Message.id.desc())
            .limit(1)
        )
        return found

    async def _reloaded(self, draft_id: uuid.UUID) -> Draft:
        draft = await self.get(draft_id)
        assert draft is not None
        return draft
