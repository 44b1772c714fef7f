"""SQL for reading one thread (the list is thread/read_repository.py; sync assigns
threads through mirror/thread_repository.py)."""

from __future__ import annotations

import uuid

from mailsvc.kit.repository import TenantRepository
from mailsvc.models import Thread


class ThreadRepository(TenantRepository):
    async def get(self, thread_id: uuid.UUID) -> Thread | None:
        found: Thread | None = await self.session.scalar(
            self.scoped.select(Thread).where(Thread.id == thread_id)
        )
        return found
