"""SQL of the search index: each message's search document, filled after it is stored.

A message row is written with `search_vector` NULL and gets its document in a later,
separate transaction (`SearchIndexRepository.index`). Computing `to_tsvector` is
about half of PostgreSQL's work per stored message; kept out of the store
transaction, it runs on a second connection while the next batch is stored, and the
store stage, which a sync waits on, does only the rest. NULL means "not indexed
yet", so rows a crash left without a document are found through a partial index and
filled by the next pass (`pending`).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Table, any_, bindparam, func, literal, literal_column, select, update
from sqlalchemy.dialects.postgresql import ARRAY, UUID
from sqlalchemy.sql.expression import ColumnElement

from mailsvc.kit.repository import TenantRepository
from mailsvc.models import Message
from mailsvc.models.message import SEARCH_CONFIG

# to_tsvector refuses documents past 1 MB; the body part of the search document is
# capped well below that so one huge message can never fail an indexing pass.
SEARCH_BODY_CHARS = 100_000

_MESSAGES: Table = Message.__table__  # type: ignore[assignment]
# A constant, never user input.
_CONFIG: ColumnElement[Any] = literal_column(f"'{SEARCH_CONFIG}'::regconfig")


def _weighted(text: ColumnElement[Any], weight: str) -> ColumnElement[Any]:
    vector = func.to_tsvector(_CONFIG, func.coalesce(text, ""))
    return func.setweight(vector, literal_column(f"'{weight}'"))


def _names_and_addresses() -> ColumnElement[Any]:
    """Every display name and address of From, To, Cc, Bcc and Reply-To, as one text."""
    m = _MESSAGES.c
    entries = (
        func.jsonb_array_elements(
            m.from_.op("||")(m.to).op("||")(m.cc).op("||")(m.bcc).op("||")(m.reply_to)
        )
        .table_valued("value")
        .render_derived(name="entry")
    )
    entry = entries.c.value
    joined = func.string_agg(
        func.concat_ws(" ", entry.op("->>")("name"), entry.op("->>")("address")), literal(" ")
    )
    return select(joined).select_from(entries).scalar_subquery()


# Subject weighs A, names and addresses B, the (capped) text body C.
_DOCUMENT = (
    _weighted(_MESSAGES.c.subject, "A")
    .op("||")(_weighted(_names_and_addresses(), "B"))
    .op("||")(_weighted(func.left(_MESSAGES.c.text_body, SEARCH_BODY_CHARS), "C"))
)
_INDEX = (
    update(_MESSAGES)
    .where(
        _MESSAGES.c.tenant_id == bindparam("tenant"),
        _MESSAGES.c.id == any_(bindparam("message_ids", type_=ARRAY(UUID(as_uuid=True)))),
        # Idempotent: a repair pass and the sync's own indexing may meet.
        _MESSAGES.c.search_vector.is_(None),
    )
    # Filling the index is not a change of the message: `updated_at` stays.
    .values(search_vector=_DOCUMENT, updated_at=_MESSAGES.c.updated_at)
)


class SearchIndexRepository(TenantRepository):
    async def index(self, message_ids: Sequence[uuid.UUID]) -> int:
        """Compute the search documents of these messages (those still without one)."""
        if not message_ids:
            return 0
        result = await self.session.execute(
            _INDEX, {"tenant": self.tenant_id, "message_ids": list(message_ids)}
        )
        return int(result.rowcount)  # type: ignore[attr-defined]

    async def pending(self, account_id: uuid.UUID, *, limit: int) -> list[uuid.UUID]:
        """Messages of the account still without a search document (oldest first)."""
        result = await self.session.scalars(
            select(Message.id)
            .where(
                Message.tenant_id == self.tenant_id,
                Message.account_id == account_id,
                Message.search_vector.is_(None),
            )
            .order_by(Message.id)
            .limit(limit)
        )
        return list(result.all())
