"""Drafts remember how a reply quotes and a forward includes its original.

Revision ID: 0009
Revises: 0008
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "drafts",
        sa.Column("quote_original", sa.Boolean(), server_default=sa.false(), nullable=False),
    )
    op.add_column(
        "drafts",
        sa.Column("forward_inline", sa.Boolean(), server_default=sa.false(), nullable=False),
    )


def downgrade() -> None:
    op.drop_column("drafts", "forward_inline")
    op.drop_column("drafts", "quote_original")
