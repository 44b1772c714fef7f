"""How long a webhook delivery's last attempt took (`last_duration_ms`).

Recorded for every attempt that sent a request: the time until the receiver's
answer, or until the request failed. Deliveries attempted before have none (NULL).

Revision ID: 0016
Revises: 0015
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("webhook_deliveries", sa.Column("last_duration_ms", sa.Integer(), nullable=True))


def downgrade() -> None:
    op.drop_column("webhook_deliveries", "last_duration_ms")
