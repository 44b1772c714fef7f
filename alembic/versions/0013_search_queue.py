"""The search queue: messages whose search documents are due, filled by triggers.

Every statement that inserts messages, changes a searched column of them or deletes
them appends one `search_queue` row per message in its own transaction, and sends
`NOTIFY mailsvc_search, '<tenant>'` once per tenant it touched (delivered at commit).
The search indexer (`mailsvc.search.indexer`) drains the queue into the tenant's
index. Statement-level triggers with transition tables: a batch of 250 stored
messages costs one trigger call, not 250.

PostgreSQL allows no column list (`UPDATE OF ...`) on a trigger with transition
tables, so the UPDATE trigger joins the old and new rows by id and queues those
whose searched columns changed: a MODSEQ-only update or a body-less bookkeeping
change queues nothing.

`accounts.indexed_at` records when an account's first mirror became searchable
(`account.indexed`, sent once). Every message stored before this revision is queued,
so the upgrade builds the index; accounts mirrored before it were searchable
already and are marked indexed.

Revision ID: 0013
Revises: 0012
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The columns a search document or a search filter reads (mailsvc.search.backend).
_SEARCHED = (
    "mailbox_id",
    "thread_id",
    "flags",
    "has_attachments",
    "internal_date",
    "subject",
    "text_body",
    "from_",
    '"to"',
    "cc",
    "bcc",
    "reply_to",
)


def _row(alias: str) -> str:
    return "(" + ", ".join(f"{alias}.{column}" for column in _SEARCHED) + ")"


# One function per event: each reads the transition tables its trigger declares.
# The data-modifying CTE returns the queued rows' tenants, one NOTIFY per tenant.
_FUNCTIONS = {
    "mailsvc_search_queue_inserted": """
        WITH queued AS (
            INSERT INTO search_queue (tenant_id, account_id, message_id)
            SELECT tenant_id, account_id, id FROM new_messages
            RETURNING tenant_id
        )
        SELECT count(pg_notify('mailsvc_search', tenant_id)) INTO notified
        FROM (SELECT DISTINCT tenant_id FROM queued) AS tenants;
    """,
    "mailsvc_search_queue_updated": f"""
        WITH queued AS (
            INSERT INTO search_queue (tenant_id, account_id, message_id)
            SELECT n.tenant_id, n.account_id, n.id
            FROM new_messages AS n JOIN old_messages AS o ON o.id = n.id
            WHERE {_row("n")} IS DISTINCT FROM {_row("o")}
            RETURNING tenant_id
        )
        SELECT count(pg_notify('mailsvc_search', tenant_id)) INTO notified
        FROM (SELECT DISTINCT tenant_id FROM queued) AS tenants;
    """,
    "mailsvc_search_queue_deleted": """
        WITH queued AS (
            INSERT INTO search_queue (tenant_id, account_id, message_id)
            SELECT tenant_id, account_id, id FROM old_messages
            RETURNING tenant_id
        )
        SELECT count(pg_notify('mailsvc_search', tenant_id)) INTO notified
        FROM (SELECT DISTINCT tenant_id FROM queued) AS tenants;
    """,
}

_TRIGGERS = {
    "messages_search_queue_inserted": (
        "INSERT",
        "NEW TABLE AS new_messages",
        "mailsvc_search_queue_inserted",
    ),
    "messages_search_queue_updated": (
        "UPDATE",
        "OLD TABLE AS old_messages NEW TABLE AS new_messages",
        "mailsvc_search_queue_updated",
    ),
    "messages_search_queue_deleted": (
        "DELETE",
        "OLD TABLE AS old_messages",
        "mailsvc_search_queue_deleted",
    ),
}


def upgrade() -> None:
    op.create_table(
        "search_queue",
        sa.Column("seq", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("tenant_id", sa.String(64), nullable=False),
        sa.Column("account_id", sa.Uuid(), nullable=False),
        sa.Column("message_id", sa.Uuid(), nullable=False),
        sa.Column(
            "queued_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_search_queue")),
    )
    op.create_index("ix_search_queue_tenant_id_seq", "search_queue", ["tenant_id", "seq"])
    op.create_index(
        "ix_search_queue_tenant_id_account_id",
        "search_queue",
        ["tenant_id", "account_id", "message_id"],
    )
    op.add_column("accounts", sa.Column("indexed_at", sa.DateTime(timezone=True), nullable=True))

    for name, body in _FUNCTIONS.items():
        op.execute(
            f"CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$\n"
            f"DECLARE notified bigint;\nBEGIN\n{body}\nRETURN NULL;\nEND\n$$"
        )
    for name, (event, transition, function) in _TRIGGERS.items():
        op.execute(
            f"CREATE TRIGGER {name} AFTER {event} ON messages REFERENCING {transition} "
            f"FOR EACH STATEMENT EXECUTE FUNCTION {function}()"
        )

    # Whatever is stored already: newest first, so recent mail is searchable first.
    op.execute(
        "INSERT INTO search_queue (tenant_id, account_id, message_id) "
        "SELECT tenant_id, account_id, id FROM messages "
        "ORDER BY tenant_id, internal_date DESC, id DESC"
    )
    op.execute(
        "UPDATE accounts SET indexed_at = now() WHERE EXISTS "
        "(SELECT 1 FROM mailboxes WHERE mailboxes.tenant_id = accounts.tenant_id "
        "AND mailboxes.account_id = accounts.id AND mailboxes.last_synced_at IS NOT NULL)"
    )


def downgrade() -> None:
    for name in _TRIGGERS:
        op.execute(f"DROP TRIGGER {name} ON messages")
    for name in _FUNCTIONS:
        op.execute(f"DROP FUNCTION {name}()")
    op.drop_column("accounts", "indexed_at")
    op.drop_index("ix_search_queue_tenant_id_account_id", table_name="search_queue")
    op.drop_index("ix_search_queue_tenant_id_seq", table_name="search_queue")
    op.drop_table("search_queue")
