"""Indexes for threading: replies found by the Message-IDs they reference.

Revision ID: 0002
Revises: 0001
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_messages_references", "messages", ["references"], postgresql_using="gin")
    op.create_index(
        "ix_messages_in_reply_to", "messages", ["tenant_id", "account_id", "in_reply_to"]
    )


def downgrade() -> None:
    op.drop_index("ix_messages_in_reply_to", table_name="messages")
    op.drop_index("ix_messages_references", table_name="messages")
