"""What sending needs beyond the initial outbox: per-account send options, the check
for an earlier success before a retry, the original a reply answers, and a subject
to show in outbox listings.

Revision ID: 0006
Revises: 0005
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "accounts",
        sa.Column(
            "send_options",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default="{}",
            nullable=False,
        ),
    )
    op.add_column(
        "outbox",
        sa.Column("verify_sent", sa.Boolean(), server_default=sa.false(), nullable=False),
    )
    op.add_column("outbox", sa.Column("answers_message_id", sa.Uuid(), nullable=True))
    op.add_column("outbox", sa.Column("subject", sa.Text(), nullable=True))
    # Bounces are matched to their outbox entry by the original Message-ID.
    op.create_index(
        "ix_outbox_tenant_id_message_id_header",
        "outbox",
        ["tenant_id", "message_id_header"],
    )


def downgrade() -> None:
    op.drop_index("ix_outbox_tenant_id_message_id_header", table_name="outbox")
    op.drop_column("outbox", "subject")
    op.drop_column("outbox", "answers_message_id")
    op.drop_column("outbox", "verify_sent")
    op.drop_column("accounts", "send_options")
