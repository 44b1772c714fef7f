"""OAuth2: per-tenant provider apps, and accounts that log in with their tokens.

Password accounts keep `imap_secret` / `smtp_secret`; OAuth2 accounts have none and
carry their app, their sealed tokens and the access token's expiry instead. Check
constraints keep each kind complete. An app cannot be deleted while an account uses
it (RESTRICT), so no account is left with tokens nobody can refresh.

Revision ID: 0014
Revises: 0013
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_SECURITY = "IN ('tls', 'starttls', 'none')"


def upgrade() -> None:
    op.create_table(
        "oauth_apps",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("tenant_id", sa.String(64), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("provider", sa.String(16), nullable=False),
        sa.Column("authorization_url", sa.String(2048), nullable=False),
        sa.Column("token_url", sa.String(2048), nullable=False),
        sa.Column("userinfo_url", sa.String(2048), nullable=True),
        sa.Column("client_id", sa.String(1024), nullable=False),
        sa.Column("client_secret", sa.Text(), nullable=False),
        sa.Column("scopes", postgresql.ARRAY(sa.String(512)), nullable=False),
        sa.Column("redirect_uri", sa.String(2048), nullable=False),
        sa.Column("imap_host", sa.String(255), nullable=False),
        sa.Column("imap_port", sa.Integer(), nullable=False),
        sa.Column("imap_security", sa.String(16), nullable=False),
        sa.Column("smtp_host", sa.String(255), nullable=False),
        sa.Column("smtp_port", sa.Integer(), nullable=False),
        sa.Column("smtp_security", sa.String(16), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("id", name="pk_oauth_apps"),
        sa.UniqueConstraint("tenant_id", "id", name="uq_oauth_apps_tenant_id_id"),
        sa.CheckConstraint(
            "provider IN ('google', 'microsoft', 'generic')", name="ck_oauth_apps_provider"
        ),
        sa.CheckConstraint(f"imap_security {_SECURITY}", name="ck_oauth_apps_imap_security"),
        sa.CheckConstraint(f"smtp_security {_SECURITY}", name="ck_oauth_apps_smtp_security"),
    )
    op.alter_column("accounts", "imap_secret", nullable=True)
    op.alter_column("accounts", "smtp_secret", nullable=True)
    op.add_column("accounts", sa.Column("oauth_app_id", sa.Uuid(), nullable=True))
    op.add_column("accounts", sa.Column("oauth_tokens", sa.Text(), nullable=True))
    op.add_column(
        "accounts", sa.Column("oauth_expires_at", sa.DateTime(timezone=True), nullable=True)
    )
    op.create_foreign_key(
        "fk_accounts_oauth_app_id_oauth_apps",
        "accounts",
        "oauth_apps",
        ["oauth_app_id", "tenant_id"],
        ["id", "tenant_id"],
        ondelete="RESTRICT",
    )
    op.create_index(
        "ix_accounts_oauth_app",
        "accounts",
        ["tenant_id", "oauth_app_id"],
        postgresql_where=sa.text("oauth_app_id IS NOT NULL"),
    )
    op.create_check_constraint(
        "ck_accounts_password_secrets",
        "accounts",
        "auth_type <> 'password' OR (imap_secret IS NOT NULL AND smtp_secret IS NOT NULL)",
    )
    op.create_check_constraint(
        "ck_accounts_oauth2_tokens",
        "accounts",
        "auth_type <> 'oauth2' OR (oauth_app_id IS NOT NULL AND oauth_tokens IS NOT NULL)",
    )


def downgrade() -> None:
    op.execute("DELETE FROM accounts WHERE auth_type = 'oauth2'")
    op.drop_constraint("ck_accounts_oauth2_tokens", "accounts", type_="check")
    op.drop_constraint("ck_accounts_password_secrets", "accounts", type_="check")
    op.drop_index("ix_accounts_oauth_app", table_name="accounts")
    op.drop_constraint("fk_accounts_oauth_app_id_oauth_apps", "accounts", type_="foreignkey")
    op.drop_column("accounts", "oauth_expires_at")
    op.drop_column("accounts", "oauth_tokens")
    op.drop_column("accounts", "oauth_app_id")
    op.alter_column("accounts", "smtp_secret", nullable=False)
    op.alter_column("accounts", "imap_secret", nullable=False)
    op.drop_table("oauth_apps")
