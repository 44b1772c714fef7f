"""SQL for the `changes` log: appending in the writer's transaction, reading in order."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, select, text, tuple_
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from mailsvc.kit.repository import TenantRepository, cross_tenant
from mailsvc.models import Account, Change, ChangeTrim

# PostgreSQL NOTIFY channel; the payload is the tenant id. Sent inside the writing
# transaction, so listeners hear of a change only once it is committed.
CHANGES_CHANNEL = "mailsvc_changes"

_CURRENT_TXID = text("(pg_current_xact_id()::text)::bigint")

# Transactions older than every one still running: their changes can be read
# without another committing behind them.
_HORIZON = text("(pg_snapshot_xmin(pg_current_snapshot())::text)::bigint")


@dataclass(frozen=True, slots=True, order=True)
class FeedPosition:
    """A place in a tenant's feed: after the change (txid, id). (0, 0) is the start."""

    txid: int
    id: int


START = FeedPosition(0, 0)


class ChangeRepository(TenantRepository):
    async def append_many(
        self, account_id: uuid.UUID, events: Sequence[tuple[str, dict[str, Any]]]
    ) -> None:
        """Append changes in the caller's transaction, with consecutive sequence numbers.

        The numbers come from the account row, which the UPDATE locks until commit: an
        account's changes therefore commit in sequence order, and a reader that has seen
        seq N can never later find a change < N appearing.

        The feed orders by (`txid`, id): the writing transaction's id, raised to the
        account's previous change's when that is higher. A transaction that got its id
        early but appends after another one (it waited for the account row) would
        otherwise sort before a change of the same account with a lower `seq`; ids
        come from a sequence under the same row lock, so they break the tie in `seq`
        order. Raising keeps the feed safe: a change never sorts below its own
        transaction's id, so readers that stop at the oldest running transaction
        still miss nothing.
        """
        if not events:
            return
        row = (
            await self.session.execute(
                self.scoped.update(Account)
                .where(Account.id == account_id)
                .values(
                    change_seq=Account.change_seq + len(events),
                    change_txid=func.greatest(Account.change_txid, _CURRENT_TXID),
                )
                # NOTIFY rides on this statement: no round trip of its own.
                .returning(
                    Account.change_seq,
                    Account.change_txid,
                    func.pg_notify(CHANGES_CHANNEL, self.tenant_id),
                )
            )
        ).first()
        if row is None:
            raise LookupError(f"account {account_id} does not exist in this tenant")
        last, txid, _ = row
        first = last - len(events) + 1
        rows = [
            {
                "account_id": account_id,
                "seq": first + offset,
                "txid": txid,
                "type": type_,
                "payload": payload,
            }
            for offset, (type_, payload) in enumerate(events)
        ]
        await self.session.execute(self.scoped.insert(Change, rows))

    async def locked_account(self, account_id: uuid.UUID) -> Account | None:
        """The account row, locked until commit (its state changes with its events)."""
        found: Account | None = await self.session.scalar(
            self.scoped.select(Account).where(Account.id == account_id).with_for_update()
        )
        return found

    async def append(self, account_id: uuid.UUID, type_: str, payload: dict[str, Any]) -> None:
        """Append one change in the caller's transaction (see `append_many`)."""
        await self.append_many(account_id, [(type_, payload)])

    async def after(
        self,
        position: FeedPosition,
        *,
        limit: int,
        account_id: uuid.UUID | None = None,
        types: Sequence[str] = (),
    ) -> list[Change]:
        """Committed changes after `position` in feed order, up to `limit`.

        Only changes of transactions older than any still running are returned (see
        migration 0007), so a reader that goes on from the last one never misses a
        change that commits later.
        """
        statement = (
            self.scoped.select(Change)
            .where(
                tuple_(Change.txid, Change.id) > tuple_(position.txid, position.id),
                Change.txid < _HORIZON,
            )
            .order_by(Change.txid, Change.id)
            .limit(limit)
        )
        if account_id is not None:
            statement = statement.where(Change.account_id == account_id)
        if types:
            statement = statement.where(Change.type.in_(list(types)))
        result = await self.session.scalars(statement)
        return list(result.all())

    async def latest(self, account_id: uuid.UUID, *, limit: int) -> list[Change]:
        """The account's last `limit` committed changes, newest first.

        Bounded by the same horizon as `after`, so a reader that follows on from the
        newest of them misses nothing that commits later.
        """
        result = await self.session.scalars(
            self.scoped.select(Change)
            .where(Change.account_id == account_id, Change.txid < _HORIZON)
            .order_by(Change.txid.desc(), Change.id.desc())
            .limit(limit)
        )
        return list(result.all())

    async def head(self) -> FeedPosition:
        """The position after the tenant's last committed change (where "now" starts)."""
        row = (
            await self.session.execute(
                self.scoped.select(Change.txid, Change.id)
                .where(Change.txid < _HORIZON)
                .order_by(Change.txid.desc(), Change.id.desc())
                .limit(1)
            )
        ).first()
        return START if row is None else FeedPosition(row[0], row[1])


async def trimmed_before(session: AsyncSession) -> FeedPosition:
    """Positions before this may have lost changes to retention."""
    row = (await session.execute(select(ChangeTrim.txid, ChangeTrim.change_id))).first()
    return START if row is None else FeedPosition(row[0], row[1])


@cross_tenant(reason="retention trims the one change log of every tenant by age")
async def trim_changes(session: AsyncSession, *, older_than: datetime, batch: int) -> int:
    """Delete up to `batch` changes written before `older_than` (every tenant), and
    move the trim mark past them, in the caller's transaction."""
    doomed = (
        select(Change.id)
        .where(Change.created_at < older_than)
        .order_by(Change.created_at)
        .limit(batch)
        .scalar_subquery()
    )
    deleted = (
        await session.execute(
            delete(Change).where(Change.id.in_(doomed)).returning(Change.txid, Change.id)
        )
    ).all()
    if not deleted:
        return 0
    last = max(FeedPosition(txid, change_id) for txid, change_id in deleted)
    mark = _trim_mark(last)
    await session.execute(mark)
    return len(deleted)


def _trim_mark(position: FeedPosition) -> Any:
    """Upsert the trim mark, never moving it back."""
    statement = pg_insert(ChangeTrim).values(
        id=1, txid=position.txid, change_id=position.id, trimmed_at=func.now()
    )
    newer = tuple_(statement.excluded.txid, statement.excluded.change_id) > tuple_(
        ChangeTrim.txid, ChangeTrim.change_id
    )
    return statement.on_conflict_do_update(
        index_elements=[ChangeTrim.id],
        set_={
            "txid": statement.excluded.txid,
            "change_id": statement.excluded.change_id,
            "trimmed_at": statement.excluded.trimmed_at,
        },
        where=newer,
    )
