"""Search moves out of the `messages` row: the PostgreSQL backend's narrow table.

`message_search` holds one row per indexed message (written by the search indexer,
issue 13) and `search_index_states` whether a tenant's rows can answer; a tenant
without a state row is ready. `messages.search_vector`, its indexes, the subject
index and the `mailsvc_cjk_bigrams` function they used go: the words of a search
document are now split in Python (`mailsvc.search.words`). Revision 0013 queues every
existing message, so the new table fills without a rebuild.

The downgrade restores the old column empty (NULL), which is how the old code marks
a row not indexed yet: its indexing pass refills every row.

Revision ID: 0012
Revises: 0011
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_VECTORS = ("document", "subject_words", "from_words", "to_words")
_VECTOR_COMMENTS = {
    "document": "subject (weight A), names and addresses (B), capped text body (C)",
    "from_words": "each From name and address, a position apart",
    "to_words": "each To, Cc and Bcc name and address, a position apart",
}

# As migration 0004 created it; only the downgrade needs it again.
_CJK_BIGRAMS = r"""
CREATE FUNCTION mailsvc_cjk_bigrams(document text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE STRICT AS $$
  SELECT coalesce(string_agg(substr(run, i, 2), ' '), '')
  FROM (
    SELECT m[1] AS run
    FROM regexp_matches(
      document, '[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af]+', 'g'
    ) AS m
  ) AS runs,
  generate_series(1, greatest(length(run) - 1, 1)) AS i
$$
"""
_SEARCH_VECTOR_COMMENT = (
    "'simple' config: subject weight A, names and addresses B, capped text "
    "body C; NULL until indexed, shortly after the row is stored"
)


def upgrade() -> None:
    op.create_table(
        "message_search",
        sa.Column("tenant_id", sa.String(64), nullable=False),
        sa.Column("message_id", sa.Uuid(), nullable=False),
        sa.Column("account_id", sa.Uuid(), nullable=False),
        sa.Column("mailbox_id", sa.Uuid(), nullable=False),
        sa.Column("thread_id", sa.Uuid(), nullable=True),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("seen", sa.Boolean(), nullable=False),
        sa.Column("flagged", sa.Boolean(), nullable=False),
        sa.Column("has_attachments", sa.Boolean(), nullable=False),
        *(
            sa.Column(
                name, postgresql.TSVECTOR(), nullable=False, comment=_VECTOR_COMMENTS.get(name)
            )
            for name in _VECTORS
        ),
        sa.PrimaryKeyConstraint("tenant_id", "message_id", name="pk_message_search"),
    )
    op.create_index(
        "ix_message_search_tenant_id_received_at_message_id",
        "message_search",
        ["tenant_id", "received_at", "message_id"],
    )
    for name in _VECTORS:
        op.create_index(
            f"ix_message_search_{name}", "message_search", [name], postgresql_using="gin"
        )
    op.create_table(
        "search_index_states",
        sa.Column("tenant_id", sa.String(64), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("schema_version", sa.Integer(), nullable=False),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.func.now(),
            nullable=False,
        ),
        sa.CheckConstraint("state IN ('ready', 'building')", name="ck_search_index_states_state"),
        sa.PrimaryKeyConstraint("tenant_id", name="pk_search_index_states"),
    )

    op.drop_index("ix_messages_search_pending", table_name="messages")
    op.drop_index("ix_messages_search_vector", table_name="messages")
    op.drop_index("ix_messages_subject_search", table_name="messages")
    op.drop_column("messages", "search_vector")
    op.execute("DROP FUNCTION mailsvc_cjk_bigrams(text)")


def downgrade() -> None:
    op.execute(_CJK_BIGRAMS)
    op.add_column(
        "messages",
        sa.Column(
            "search_vector",
            postgresql.TSVECTOR(),
            nullable=True,
            comment=_SEARCH_VECTOR_COMMENT,
        ),
    )
    op.create_index(
        "ix_messages_search_vector", "messages", ["search_vector"], postgresql_using="gin"
    )
    op.create_index(
        "ix_messages_search_pending",
        "messages",
        ["tenant_id", "account_id"],
        postgresql_where=sa.text("search_vector IS NULL"),
    )
    op.execute(
        "CREATE INDEX ix_messages_subject_search ON messages USING gin "
        "(to_tsvector('simple'::regconfig, "
        "(coalesce(subject, '') || ' ') || mailsvc_cjk_bigrams(coalesce(subject, ''))))"
    )
    op.drop_table("search_index_states")
    op.drop_table("message_search")
