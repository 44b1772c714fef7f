"""Counting unread messages per mailbox from an index of the unread rows only.

`mailboxes.messages_unseen` is recounted after every change to a mailbox's flags or
rows; with this partial index a recount reads the unread rows, not the mailbox.

Revision ID: 0011
Revises: 0010
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_UNSEEN = "NOT ('\\Seen'::text = ANY (flags))"


def upgrade() -> None:
    op.create_index(
        "ix_messages_unseen",
        "messages",
        ["tenant_id", "mailbox_id"],
        postgresql_where=sa.text(_UNSEEN),
    )
    # Counts of mailboxes mirrored before this revision (the column was never written).
    op.execute(
        "UPDATE mailboxes SET messages_unseen = (SELECT count(*) FROM messages "
        "WHERE messages.tenant_id = mailboxes.tenant_id "
        f"AND messages.mailbox_id = mailboxes.id AND {_UNSEEN})"
    )


def downgrade() -> None:
    op.drop_index("ix_messages_unseen", table_name="messages")
