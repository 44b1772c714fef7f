"""Search documents filled after the store; message bodies compressed with lz4.

`messages.search_vector` becomes nullable with no default: NULL marks a row whose
search document is not computed yet, and a partial index finds those rows. Where
the server was built with lz4, the two body columns use it for TOAST compression
instead of pglz (new values only; existing rows keep theirs).

Revision ID: 0003
Revises: 0002
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import TSVECTOR

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_OLD_COMMENT = (
    "Filled by the writer, 'simple' config: subject weight A, "
    "names and addresses B, capped text body C"
)
_NEW_COMMENT = (
    "'simple' config: subject weight A, names and addresses B, capped text "
    "body C; NULL until indexed, shortly after the row is stored"
)
_BODIES = ("text_body", "html_body")


def _server_has_lz4() -> bool:
    found = op.get_bind().scalar(
        sa.text(
            "SELECT 'lz4' = ANY(enumvals) FROM pg_settings WHERE name = 'default_toast_compression'"
        )
    )
    return bool(found)


def upgrade() -> None:
    op.alter_column(
        "messages",
        "search_vector",
        existing_type=TSVECTOR(),
        nullable=True,
        server_default=None,
        comment=_NEW_COMMENT,
        existing_comment=_OLD_COMMENT,
    )
    op.create_index(
        "ix_messages_search_pending",
        "messages",
        ["tenant_id", "account_id"],
        postgresql_where=sa.text("search_vector IS NULL"),
    )
    if _server_has_lz4():
        for column in _BODIES:
            op.execute(f"ALTER TABLE messages ALTER COLUMN {column} SET COMPRESSION lz4")


def downgrade() -> None:
    for column in _BODIES:
        op.execute(f"ALTER TABLE messages ALTER COLUMN {column} SET COMPRESSION default")
    op.drop_index("ix_messages_search_pending", table_name="messages")
    # Rows not indexed yet get an empty document: 0002's schema has no "pending" state.
    op.execute("UPDATE messages SET search_vector = ''::tsvector WHERE search_vector IS NULL")
    op.alter_column(
        "messages",
        "search_vector",
        existing_type=TSVECTOR(),
        nullable=False,
        server_default=sa.text("''::tsvector"),
        comment=_OLD_COMMENT,
        existing_comment=_NEW_COMMENT,
    )
