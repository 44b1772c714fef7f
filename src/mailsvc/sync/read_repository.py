"""SQL of an account's sync progress on the raw pool (kit/reads.py): its state and
every mailbox with its counts, built as JSON by PostgreSQL in one statement."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass

import asyncpg

from mailsvc.kit.reads import TenantReads, json_time

# One `MailboxOut` (schemas.py). `messages_indexed` is the stored messages less those
# still queued for the indexer; never below 0, as the counter is the sync's and the
# queue the indexer's.
_MAILBOX_ITEM = f"""json_build_object(
    'id', b.id, 'name', b.name, 'delimiter', b.delimiter, 'role', b.special_use,
    'attributes', b.attributes, 'selectable', b.selectable,
    'messages_total', b.messages_total, 'messages_unseen', b.messages_unseen,
    'messages_synced', b.messages_synced,
    'messages_indexed', greatest(0, b.messages_synced - coalesce(p.pending, 0)),
    'sync_state', b.sync_state, 'last_synced_at', {json_time("b.last_synced_at")},
    'sync_error', b.sync_error)"""

# INBOX first, then by name in code point order (as Python sorted them before).
_PROGRESS = f"""WITH pending AS (
    SELECT m.mailbox_id, count(*) AS pending FROM messages m
    WHERE m.tenant_id = $1 AND m.account_id = $2::uuid AND m.id IN (
        SELECT q.message_id FROM search_queue q
        WHERE q.tenant_id = $1 AND q.account_id = $2::uuid)
    GROUP BY m.mailbox_id),
boxes AS (
    SELECT b.*, coalesce(p.pending, 0) AS pending, {_MAILBOX_ITEM} AS item
    FROM mailboxes b LEFT JOIN pending p ON p.mailbox_id = b.id
    WHERE b.tenant_id = $1 AND b.account_id = $2::uuid)
SELECT a.state, a.last_error, {json_time("a.last_error_at")} AS last_error_at,
    (SELECT coalesce(json_agg(x.item ORDER BY x.special_use IS DISTINCT FROM 'inbox',
        x.name COLLATE "C"), '[]')::text FROM boxes x) AS mailboxes,
    (SELECT coalesce(sum(x.messages_total), 0) FROM boxes x WHERE x.selectable) AS total,
    (SELECT coalesce(sum(x.messages_synced), 0) FROM boxes x WHERE x.selectable) AS synced,
    (SELECT coalesce(sum(greatest(0, x.messages_synced - x.pending)), 0) FROM boxes x
        WHERE x.selectable) AS indexed
FROM accounts a WHERE a.tenant_id = $1 AND a.id = $2::uuid"""


# The same for several accounts in one round trip (the console's accounts table): the
# statement above once per id; an id of another tenant yields no row.
_PROGRESS_MANY = f"""SELECT ids.id AS account_id, p.*
FROM unnest($2::uuid[]) AS ids(id)
CROSS JOIN LATERAL ({_PROGRESS.replace("$2::uuid", "ids.id")}) p"""


@dataclass(frozen=True, slots=True)
class Progress:
    """An account's state and its mailboxes (a JSON array of `MailboxOut`), with the
    totals over its selectable mailboxes."""

    state: str
    last_error: str | None
    last_error_at: str | None  # formatted as the JSON string holds it
    mailboxes: str
    messages_total: int
    messages_synced: int
    messages_indexed: int


class SyncReads(TenantReads):
    """Sync progress of one tenant's accounts, on the raw pool."""

    async def progress(self, account_id: uuid.UUID) -> Progress | None:
        """The account's progress; None when the tenant has no such account."""
        row = await self.fetchrow(_PROGRESS, account_id)
        return None if row is None else _progress(row)

    async def progress_of(self, account_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, Progress]:
        """The progress of each of the tenant's accounts among `account_ids`."""
        rows = await self.fetch(_PROGRESS_MANY, list(account_ids))
        return {row["account_id"]: _progress(row) for row in rows}


def _progress(row: asyncpg.Record) -> Progress:
    return Progress(
        state=row["state"],
        last_error=row["last_error"],
        last_error_at=row["last_error_at"],
        mailboxes=row["mailboxes"],
        messages_total=int(row["total"]),
        messages_synced=int(row["synced"]),
        messages_indexed=int(row["indexed"]),
    )
