"""Retrying the copy of a sent message to the Sent mailbox when filing it failed.

Revision ID: 0010
Revises: 0009
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "outbox",
        sa.Column("sent_copy_attempts", sa.Integer(), server_default="0", nullable=False),
    )
    # The sweep's cross-tenant look for copies to file again: few rows, if any.
    op.create_index(
        "ix_outbox_sent_copy_due",
        "outbox",
        ["updated_at"],
        postgresql_where=sa.text(
            "status IN ('sent', 'bounced') AND sent_copy_saved_at IS NULL "
            "AND sent_copy_attempts > 0"
        ),
    )


def downgrade() -> None:
    op.drop_index("ix_outbox_sent_copy_due", table_name="outbox")
    op.drop_column("outbox", "sent_copy_attempts")
