"""The change feed's order (the writing transaction's id) and how far retention trimmed.

`changes.id` comes from a sequence when a row is inserted, not when its transaction
commits, so a reader paging by id could pass over a change whose transaction
commits after a later one. Each row now records its transaction id (`txid`), and
the feed reads only changes of transactions older than every transaction still in
progress (`pg_snapshot_xmin`): whatever commits later sorts after what was read.

Revision ID: 0007
Revises: 0006
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "changes",
        sa.Column(
            "txid",
            sa.BigInteger(),
            server_default=sa.text("(pg_current_xact_id()::text)::bigint"),
            nullable=False,
        ),
    )
    op.create_index("ix_changes_tenant_id_txid_id", "changes", ["tenant_id", "txid", "id"])
    # Per account, changes sort in `seq` order too (see ChangeRepository.append_many).
    op.add_column(
        "accounts",
        sa.Column("change_txid", sa.BigInteger(), server_default="0", nullable=False),
    )
    op.drop_index("ix_changes_tenant_id_id", table_name="changes")
    op.create_table(
        "change_trims",
        sa.Column("id", sa.SmallInteger(), nullable=False),
        sa.Column("txid", sa.BigInteger(), nullable=False),
        sa.Column("change_id", sa.BigInteger(), nullable=False),
        sa.Column(
            "trimmed_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_change_trims")),
    )


def downgrade() -> None:
    op.drop_column("accounts", "change_txid")
    op.drop_table("change_trims")
    op.create_index("ix_changes_tenant_id_id", "changes", ["tenant_id", "id"])
    op.drop_index("ix_changes_tenant_id_txid_id", table_name="changes")
    op.drop_column("changes", "txid")
