"""Gmail: labels on messages, their stable id, and label folders on mailboxes.

A Gmail account (X-GM-EXT-1) is mirrored from its store, All Mail, Spam and Trash;
each message carries its X-GM-LABELS (`messages.labels`, NULL on other servers) and
its X-GM-MSGID (`gm_message_id`; X-GM-THRID was stored already). Every other Gmail
folder is a label shown as a folder: `mailboxes.gmail_label` says which, and it is
listed but never fetched (mailsvc.sync.plan).

`labels` is searched (`label:`), so the search queue's UPDATE trigger (0013) now also
queues a message whose labels changed, and `message_search` carries them for the
PostgreSQL search backend. Rows stored before have no labels, so no document is
out of date and nothing is requeued.

Revision ID: 0015
Revises: 0014
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The columns a search document or a search filter reads (0013's, and now labels).
_SEARCHED_BEFORE = (
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
_SEARCHED = (*_SEARCHED_BEFORE, "labels")


def _updated_function(columns: Sequence[str]) -> str:
    """0013's `mailsvc_search_queue_updated`, comparing `columns` of old and new rows."""

    def row(alias: str) -> str:
        return "(" + ", ".join(f"{alias}.{column}" for column in columns) + ")"

    return (
        "CREATE OR REPLACE FUNCTION mailsvc_search_queue_updated() RETURNS trigger "
        "LANGUAGE plpgsql AS $$\nDECLARE notified bigint;\nBEGIN\n"
        f"""
        WITH queued AS (
            INSERT INTO search_queue (tenant_id, account_id, message_id)
            SELECT n.tenant_id, n.account_id, n.id
            FROM new_messages AS n JOIN old_messages AS o ON o.id = n.id
            WHERE {row("n")} IS DISTINCT FROM {row("o")}
            RETURNING tenant_id
        )
        SELECT count(pg_notify('mailsvc_search', tenant_id)) INTO notified
        FROM (SELECT DISTINCT tenant_id FROM queued) AS tenants;
    """
        "\nRETURN NULL;\nEND\n$$"
    )


def upgrade() -> None:
    op.add_column("messages", sa.Column("gm_message_id", sa.BigInteger(), nullable=True))
    op.add_column("messages", sa.Column("labels", postgresql.ARRAY(sa.Text()), nullable=True))
    op.create_index(
        "ix_messages_labels",
        "messages",
        ["labels"],
        postgresql_using="gin",
        postgresql_where=sa.text("labels IS NOT NULL"),
    )
    op.add_column("mailboxes", sa.Column("gmail_label", sa.Text(), nullable=True))
    op.create_index(
        "ix_mailboxes_gmail_labels",
        "mailboxes",
        ["tenant_id", "special_use"],
        postgresql_where=sa.text("gmail_label IS NOT NULL"),
    )
    op.add_column("message_search", sa.Column("labels", postgresql.ARRAY(sa.Text()), nullable=True))
    op.execute(_updated_function(_SEARCHED))


def downgrade() -> None:
    op.execute(_updated_function(_SEARCHED_BEFORE))
    op.drop_column("message_search", "labels")
    op.drop_index("ix_mailboxes_gmail_labels", table_name="mailboxes")
    op.drop_column("mailboxes", "gmail_label")
    op.drop_index("ix_messages_labels", table_name="messages")
    op.drop_column("messages", "labels")
    op.drop_column("messages", "gm_message_id")
