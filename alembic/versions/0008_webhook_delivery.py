"""Webhook delivery: each webhook's place in the change feed, and what orders deliveries.

`webhooks.cursor_txid/cursor_id` is the fan-out's position in the tenant's feed (see
migration 0007). A delivery now carries its change's account, feed position and
per-account sequence, so a webhook's deliveries of one account can go out one at a
time, in sequence order, from an index of the unfinished ones.

Revision ID: 0008
Revises: 0007
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_DELIVERY_COLUMNS = (
    ("account_id", sa.Uuid()),
    ("change_txid", sa.BigInteger()),
    ("change_seq", sa.BigInteger()),
)


def upgrade() -> None:
    for name in ("cursor_txid", "cursor_id"):
        op.add_column(
            "webhooks", sa.Column(name, sa.BigInteger(), server_default="0", nullable=False)
        )
    # Existing webhooks start where a new one would: at the end of their tenant's feed.
    op.execute(
        """
        UPDATE webhooks AS w SET cursor_txid = last.txid, cursor_id = last.id
        FROM (
            SELECT DISTINCT ON (tenant_id) tenant_id, txid, id FROM changes
            ORDER BY tenant_id, txid DESC, id DESC
        ) AS last
        WHERE last.tenant_id = w.tenant_id
        """
    )

    for name, type_ in _DELIVERY_COLUMNS:
        op.add_column("webhook_deliveries", sa.Column(name, type_, nullable=True))
    op.execute(
        """
        UPDATE webhook_deliveries AS d
        SET account_id = c.account_id, change_txid = c.txid, change_seq = c.seq
        FROM changes AS c
        WHERE c.id = d.change_id AND c.tenant_id = d.tenant_id
        """
    )
    # A delivery whose change is gone has nothing left to send.
    op.execute("DELETE FROM webhook_deliveries WHERE account_id IS NULL")
    for name, _ in _DELIVERY_COLUMNS:
        op.alter_column("webhook_deliveries", name, nullable=False)
    op.create_index(
        "ix_webhook_deliveries_next",
        "webhook_deliveries",
        ["tenant_id", "webhook_id", "account_id", "change_seq"],
        postgresql_where=sa.text("status IN ('pending', 'delivering')"),
    )


def downgrade() -> None:
    op.drop_index("ix_webhook_deliveries_next", table_name="webhook_deliveries")
    for name, _ in reversed(_DELIVERY_COLUMNS):
        op.drop_column("webhook_deliveries", name)
    op.drop_column("webhooks", "cursor_id")
    op.drop_column("webhooks", "cursor_txid")
