"""One stored message, an attachment or a summary, read inside the caller's session.

The write paths (flags, moves, downloads) need these in their own transaction, so
they read through SQLAlchemy; the hot reads are `MessageService`'s (service.py).
"""

from __future__ import annotations

import uuid

from sqlalchemy.ext.asyncio import AsyncSession

from mailsvc.errors import NotFoundError
from mailsvc.message import schemas
from mailsvc.message.bodies import summary_from_row
from mailsvc.message.repository import MessageRepository
from mailsvc.models import Attachment, Message


class MessageLookup:
    """Finds one tenant's messages by id in `session`, 404 when they are not there."""

    def __init__(self, session: AsyncSession, tenant_id: str) -> None:
        self._messages = MessageRepository(session, tenant_id)

    async def summary(self, message_id: uuid.UUID) -> schemas.MessageSummary:
        row = await self._messages.summary(message_id)
        if row is None:
            raise NotFoundError("message not found", code="message_not_found")
        return summary_from_row(row)

    async def attachment(
        self, message_id: uuid.UUID, attachment_id: uuid.UUID
    ) -> tuple[Message, Attachment]:
        found = await self._messages.attachment(message_id, attachment_id)
        if found is None:
            raise NotFoundError("attachment not found", code="attachment_not_found")
        return found

    async def message(self, message_id: uuid.UUID) -> Message:
        found = await self._messages.get(message_id)
        if found is None:
            raise NotFoundError("message not found", code="message_not_found")
        return found
