"""SQL for the `changes` log."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import insert, update

from mailsvc.kit.repository import TenantRepository
from mailsvc.models import Account, Change


class ChangeRepository(TenantRepository):
    async def append_many(
        self, account_id: uuid.UUID, events: Sequence[tuple[str, dict[str, Any]]]
    ) -> None:
        """Append changes in the caller's transaction, with consecutive sequence numbers.

        The numbers come from the account row, which the UPDATE locks until commit: an
        account's changes therefore commit in sequence order, and a reader that has seen
        seq N can never later find a change < N appearing.
        """
        if not events:
            return
        last = await self.session.scalar(
            update(Account)
            .where(Account.tenant_id == self.tenant_id, Account.id == account_id)
            .values(change_seq=Account.change_seq + len(events))
            .returning(Account.change_seq)
        )
        if last is None:
            raise LookupError(f"account {account_id} does not exist in this tenant")
        first = last - len(events) + 1
        await self.session.execute(
            insert(Change).values(
                [
                    {
                        "tenant_id": self.tenant_id,
                        "account_id": account_id,
                        "seq": first + offset,
                        "type": type_,
                        "payload": payload,
                    }
                    for offset, (type_, payload) in enumerate(events)
                ]
            )
        )

    async def append(self, account_id: uuid.UUID, type_: str, payload: dict[str, Any]) -> None:
        """Append one change in the caller's transaction (see `append_many`)."""
        await self.append_many(account_id, [(type_, payload)])
