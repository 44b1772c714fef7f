"""Reads of the messages API: a tenant-wide listing index, CJK bigrams for search.

Revision ID: 0004
Revises: 0003
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Overlapping character bigrams of every run of Hiragana/Katakana, CJK ideographs
# (Extension A and the unified block) and Hangul syllables: those scripts have no
# spaces, so the text-search parser would make each run one token. A run of one
# character is kept as itself. mailsvc.search.query.cjk_bigrams does the same to
# queries. IMMUTABLE so it may appear in index expressions.
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


def upgrade() -> None:
    op.execute(_CJK_BIGRAMS)
    op.create_index(
        "ix_messages_tenant_listing",
        "messages",
        ["tenant_id", sa.text("internal_date DESC"), sa.text("id DESC")],
    )


def downgrade() -> None:
    op.drop_index("ix_messages_tenant_listing", table_name="messages")
    op.execute("DROP FUNCTION mailsvc_cjk_bigrams(text)")
