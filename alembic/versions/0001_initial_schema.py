"""Initial schema: accounts, mailboxes, messages, threads, drafts, outbox, webhooks, changes.

Every tenant-owned table has `tenant_id`, and its composite indexes lead with it.
Foreign keys between tenant-owned tables are (column, tenant_id) -> (id, tenant_id),
so a row can only reference its own tenant's rows (see kit.db.tenant_foreign_key).

Revision ID: 0001
Revises:
Create Date: 2026-11-29
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# In creation order; downgrade drops them in reverse.
TABLES = (
    "accounts",
    "api_keys",
    "changes",
    "mailboxes",
    "threads",
    "messages",
    "attachments",
    "drafts",
    "draft_attachments",
    "outbox",
    "webhooks",
    "webhook_deliveries",
)


def _id() -> sa.Column[Any]:
    return sa.Column("id", sa.Uuid(), nullable=False)


def _tenant_id() -> sa.Column[Any]:
    return sa.Column("tenant_id", sa.String(64), nullable=False)


def _now(name: str) -> sa.Column[Any]:
    """A NOT NULL timestamptz that defaults to now()."""
    return sa.Column(
        name, sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
    )


def _timestamp(name: str) -> sa.Column[Any]:
    return sa.Column(name, sa.DateTime(timezone=True))


def _address_list(name: str) -> sa.Column[Any]:
    """A JSONB array of {name, address} objects."""
    return sa.Column(name, postgresql.JSONB(), server_default=sa.text("'[]'"), nullable=False)


def _text_array(name: str) -> sa.Column[Any]:
    return sa.Column(
        name, postgresql.ARRAY(sa.Text()), server_default=sa.text("'{}'"), nullable=False
    )


def _counter(name: str) -> sa.Column[Any]:
    return sa.Column(name, sa.Integer(), server_default="0", nullable=False)


def _flag(name: str, *, default: bool) -> sa.Column[Any]:
    return sa.Column(
        name, sa.Boolean(), server_default=sa.text(str(default).lower()), nullable=False
    )


def _one_of(table: str, column: str, *values: str) -> sa.CheckConstraint:
    quoted = ", ".join(f"'{value}'" for value in values)
    return sa.CheckConstraint(f"{column} IN ({quoted})", name=f"ck_{table}_{column}")


def _tenant_fk(
    table: str, column: str, parent: str, *, set_null: bool = False
) -> sa.ForeignKeyConstraint:
    """(column, tenant_id) -> parent (id, tenant_id); SET NULL clears `column` only."""
    return sa.ForeignKeyConstraint(
        [column, "tenant_id"],
        [f"{parent}.id", f"{parent}.tenant_id"],
        name=f"fk_{table}_{column}_{parent}",
        ondelete=f"SET NULL ({column})" if set_null else "CASCADE",
    )


def upgrade() -> None:
    op.create_table(
        "accounts",
        _id(),
        _tenant_id(),
        sa.Column("email", sa.String(320), nullable=False),
        sa.Column("display_name", sa.String(200)),
        sa.Column("imap_host", sa.String(255), nullable=False),
        sa.Column("imap_port", sa.Integer(), nullable=False),
        sa.Column("imap_security", sa.String(16), nullable=False),
        sa.Column("imap_username", sa.String(320), nullable=False),
        sa.Column("imap_secret", sa.Text(), nullable=False),
        sa.Column("smtp_host", sa.String(255), nullable=False),
        sa.Column("smtp_port", sa.Integer(), nullable=False),
        sa.Column("smtp_security", sa.String(16), nullable=False),
        sa.Column("smtp_username", sa.String(320), nullable=False),
        sa.Column("smtp_secret", sa.Text(), nullable=False),
        sa.Column("auth_type", sa.String(16), server_default="password", nullable=False),
        sa.Column("state", sa.String(16), server_default="connecting", nullable=False),
        sa.Column("last_error", sa.Text()),
        _timestamp("last_error_at"),
        _timestamp("state_changed_at"),
        sa.Column("credentials_version", sa.Integer(), server_default="1", nullable=False),
        sa.Column("sync_options", postgresql.JSONB(), server_default="{}", nullable=False),
        sa.Column("change_seq", sa.BigInteger(), server_default="0", nullable=False),
        _now("created_at"),
        _now("updated_at"),
        sa.PrimaryKeyConstraint("id", name="pk_accounts"),
        sa.UniqueConstraint("tenant_id", "email", name="uq_accounts_tenant_id_email"),
        sa.UniqueConstraint("tenant_id", "id", name="uq_accounts_tenant_id_id"),
        _one_of("accounts", "imap_security", "tls", "starttls", "none"),
        _one_of("accounts", "smtp_security", "tls", "starttls", "none"),
        _one_of("accounts", "auth_type", "password", "oauth2"),
        _one_of(
            "accounts",
            "state",
            "connecting",
            "connected",
            "auth_error",
            "connect_error",
            "disabled",
        ),
    )

    op.create_table(
        "api_keys",
        _id(),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("key_hash", sa.String(64), nullable=False),
        sa.Column("tenants", postgresql.ARRAY(sa.String(64)), nullable=False),
        sa.Column("scopes", postgresql.ARRAY(sa.String(64)), nullable=False),
        _now("created_at"),
        _timestamp("last_used_at"),
        _timestamp("revoked_at"),
        sa.PrimaryKeyConstraint("id", name="pk_api_keys"),
        sa.UniqueConstraint("key_hash", name="uq_api_keys_key_hash"),
    )

    # No foreign key to accounts: `account.deleted` must outlive the account.
    op.create_table(
        "changes",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        _tenant_id(),
        sa.Column("account_id", sa.Uuid(), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("type", sa.String(64), nullable=False),
        sa.Column("payload", postgresql.JSONB(), server_default="{}", nullable=False),
        _now("created_at"),
        sa.PrimaryKeyConstraint("id", name="pk_changes"),
        sa.UniqueConstraint(
            "tenant_id", "account_id", "seq", name="uq_changes_tenant_id_account_id_seq"
        ),
    )
    op.create_index("ix_changes_tenant_id_id", "changes", ["tenant_id", "id"])
    op.create_index("ix_changes_created_at", "changes", ["created_at"])

    op.create_table(
        "mailboxes",
        _id(),
        _tenant_id(),
        sa.Column("account_id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("delimiter", sa.String(8)),
        sa.Column("special_use", sa.String(16)),
        _text_array("attributes"),
        _flag("subscribed", default=False),
        _flag("selectable", default=True),
        sa.Column("uidvalidity", sa.BigInteger()),
        sa.Column("uidnext", sa.BigInteger()),
        sa.Column("highestmodseq", sa.BigInteger()),
        _counter("messages_total"),
        _counter("messages_unseen"),
        _counter("messages_synced"),
        sa.Column("sync_state", sa.String(16), server_default="pending", nullable=False),
        _timestamp("sync_started_at"),
        _timestamp("last_synced_at"),
        sa.Column("sync_error", sa.Text()),
        _timestamp("sync_error_at"),
        _now("created_at"),
        _now("updated_at"),
        sa.PrimaryKeyConstraint("id", name="pk_mailboxes"),
        sa.UniqueConstraint("tenant_id", "id", name="uq_mailboxes_tenant_id_id"),
        sa.UniqueConstraint(
            "tenant_id", "account_id", "name", name="uq_mailboxes_tenant_id_account_id_name"
        ),
        _tenant_fk("mailboxes", "account_id", "accounts"),
        _one_of(
            "mailboxes",
            "special_use",
            "inbox",
            "sent",
            "drafts",
            "trash",
            "junk",
            "archive",
            "all",
            "flagged",
        ),
        _one_of("mailboxes", "sync_state", "pending", "syncing", "synced", "error"),
    )

    op.create_table(
        "threads",
        _id(),
        _tenant_id(),
        sa.Column("account_id", sa.Uuid(), nullable=False),
        sa.Column("subject", sa.Text()),
        _address_list("participants"),
        _counter("message_count"),
        _counter("unread_count"),
        sa.Column("last_message_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("gm_thread_id", sa.BigInteger()),
        _now("created_at"),
        _now("updated_at"),
        sa.PrimaryKeyConstraint("id", name="pk_threads"),
        sa.UniqueConstraint("tenant_id", "id", name="uq_threads_tenant_id_id"),
        sa.UniqueConstraint(
            "tenant_id",
            "account_id",
            "gm_thread_id",
            name="uq_threads_tenant_id_account_id_gm_thread_id",
        ),
        _tenant_fk("threads", "account_id", "accounts"),
    )
    op.create_index(
        "ix_threads_listing",
        "threads",
        [
            "tenant_id",
            "account_id",
            sa.literal_column("last_message_at DESC"),
            sa.literal_column("id DESC"),
        ],
    )

    op.create_table(
        "messages",
        _id(),
        _tenant_id(),
        sa.Column("account_id", sa.Uuid(), nullable=False),
        sa.Column("mailbox_id", sa.Uuid(), nullable=False),
        sa.Column("uid", sa.BigInteger(), nullable=False),
        sa.Column("uidvalidity", sa.BigInteger(), nullable=False),
        sa.Column("modseq", sa.BigInteger()),
        sa.Column("message_id_header", sa.Text()),
        sa.Column("in_reply_to", sa.Text()),
        _text_array("references"),
        sa.Column("subject", sa.Text()),
        _address_list("from_"),
        _address_list("sender"),
        _address_list("to"),
        _address_list("cc"),
        _address_list("bcc"),
        _address_list("reply_to"),
        _timestamp("date"),
        sa.Column("internal_date", sa.DateTime(timezone=True), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        _text_array("flags"),
        sa.Column("thread_id", sa.Uuid()),
        sa.Column("gm_thread_id", sa.BigInteger()),
        sa.Column("snippet", sa.Text()),
        sa.Column("text_body", sa.Text()),
        sa.Column("html_body", sa.Text()),
        _flag("has_attachments", default=False),
        sa.Column("parse_error", sa.Text()),
        sa.Column(
            "search_vector",
            postgresql.TSVECTOR(),
            server_default=sa.text("''::tsvector"),
            nullable=False,
            comment=(
                "Filled by the writer, 'simple' config: subject weight A, "
                "names and addresses B, capped text body C"
            ),
        ),
        _now("created_at"),
        _now("updated_at"),
        sa.PrimaryKeyConstraint("id", name="pk_messages"),
        sa.UniqueConstraint("tenant_id", "id", name="uq_messages_tenant_id_id"),
        sa.UniqueConstraint(
            "tenant_id",
            "mailbox_id",
            "uidvalidity",
            "uid",
            name="uq_messages_tenant_id_mailbox_id_uidvalidity_uid",
        ),
        _tenant_fk("messages", "account_id", "accounts"),
        _tenant_fk("messages", "mailbox_id", "mailboxes"),
        _tenant_fk("messages", "thread_id", "threads", set_null=True),
    )
    op.create_index(
        "ix_messages_mailbox_listing",
        "messages",
        [
            "tenant_id",
            "mailbox_id",
            sa.literal_column("internal_date DESC"),
            sa.literal_column("id DESC"),
        ],
    )
    op.create_index(
        "ix_messages_account_listing",
        "messages",
        [
            "tenant_id",
            "account_id",
            sa.literal_column("internal_date DESC"),
            sa.literal_column("id DESC"),
        ],
    )
    op.create_index("ix_messages_thread", "messages", ["tenant_id", "thread_id", "internal_date"])
    op.create_index(
        "ix_messages_message_id_header",
        "messages",
        ["tenant_id", "account_id", "message_id_header"],
    )
    op.create_index(
        "ix_messages_search_vector", "messages", ["search_vector"], postgresql_using="gin"
    )

    op.create_table(
        "attachments",
        _id(),
        _tenant_id(),
        sa.Column("message_id", sa.Uuid(), nullable=False),
        sa.Column("section", sa.String(64), nullable=False),
        sa.Column("filename", sa.Text()),
        sa.Column("content_type", sa.String(255), nullable=False),
        sa.Column("encoding", sa.String(32), server_default="7bit", nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("content_id", sa.Text()),
        _flag("is_inline", default=False),
        sa.PrimaryKeyConstraint("id", name="pk_attachments"),
        sa.UniqueConstraint(
            "tenant_id",
            "message_id",
            "section",
            name="uq_attachments_tenant_id_message_id_section",
        ),
        _tenant_fk("attachments", "message_id", "messages"),
    )

    op.create_table(
        "drafts",
        _id(),
        _tenant_id(),
        sa.Column("account_id", sa.Uuid(), nullable=False),
        sa.Column("from_", postgresql.JSONB()),
        _address_list("to"),
        _address_list("cc"),
        _address_list("bcc"),
        _address_list("reply_to"),
        sa.Column("subject", sa.Text()),
        sa.Column("text_body", sa.Text()),
        sa.Column("html_body", sa.Text()),
        sa.Column("headers", postgresql.JSONB(), server_default=sa.text("'{}'"), nullable=False),
        sa.Column("in_reply_to_message_id", sa.Uuid()),
        sa.Column("forward_of_message_id", sa.Uuid()),
        sa.Column("in_reply_to", sa.Text()),
        _text_array("references"),
        sa.Column("imap_uidvalidity", sa.BigInteger()),
        sa.Column("imap_uid", sa.BigInteger()),
        _now("created_at"),
        _now("updated_at"),
        sa.PrimaryKeyConstraint("id", name="pk_drafts"),
        sa.UniqueConstraint("tenant_id", "id", name="uq_drafts_tenant_id_id"),
        _tenant_fk("drafts", "account_id", "accounts"),
        _tenant_fk("drafts", "in_reply_to_message_id", "messages", set_null=True),
        _tenant_fk("drafts", "forward_of_message_id", "messages", set_null=True),
    )
    op.create_index(
        "ix_drafts_tenant_id_account_id_id", "drafts", ["tenant_id", "account_id", "id"]
    )
    op.create_index(
        "ix_drafts_in_reply_to_message_id",
        "drafts",
        ["tenant_id", "in_reply_to_message_id"],
        postgresql_where=sa.text("in_reply_to_message_id IS NOT NULL"),
    )
    op.create_index(
        "ix_drafts_forward_of_message_id",
        "drafts",
        ["tenant_id", "forward_of_message_id"],
        postgresql_where=sa.text("forward_of_message_id IS NOT NULL"),
    )

    op.create_table(
        "draft_attachments",
        _id(),
        _tenant_id(),
        sa.Column("draft_id", sa.Uuid(), nullable=False),
        sa.Column("filename", sa.Text(), nullable=False),
        sa.Column("content_type", sa.String(255), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("content_id", sa.Text()),
        _flag("is_inline", default=False),
        sa.Column("content", sa.LargeBinary(), nullable=False),
        _now("created_at"),
        sa.PrimaryKeyConstraint("id", name="pk_draft_attachments"),
        _tenant_fk("draft_attachments", "draft_id", "drafts"),
    )
    op.create_index(
        "ix_draft_attachments_tenant_id_draft_id", "draft_attachments", ["tenant_id", "draft_id"]
    )

    op.create_table(
        "outbox",
        _id(),
        _tenant_id(),
        sa.Column("account_id", sa.Uuid(), nullable=False),
        sa.Column("draft_id", sa.Uuid()),
        sa.Column("status", sa.String(16), server_default="queued", nullable=False),
        _timestamp("send_at"),
        _now("next_attempt_at"),
        _counter("attempts"),
        sa.Column("max_attempts", sa.Integer(), server_default="10", nullable=False),
        _timestamp("last_attempt_at"),
        sa.Column("message_id_header", sa.Text(), nullable=False),
        sa.Column("envelope_from", sa.String(320), nullable=False),
        sa.Column("envelope_to", postgresql.ARRAY(sa.String(320)), nullable=False),
        sa.Column("raw_mime", sa.LargeBinary(), nullable=False),
        sa.Column("last_smtp_code", sa.Integer()),
        sa.Column("last_smtp_reply", sa.Text()),
        sa.Column("last_error", sa.Text()),
        sa.Column("idempotency_key", sa.String(255)),
        sa.Column("request_hash", sa.String(64)),
        _timestamp("sent_at"),
        _timestamp("sent_copy_saved_at"),
        sa.Column("bounce_status", sa.String(16)),
        sa.Column("bounce_diagnostic", sa.Text()),
        _now("created_at"),
        _now("updated_at"),
        sa.PrimaryKeyConstraint("id", name="pk_outbox"),
        _tenant_fk("outbox", "account_id", "accounts"),
        _tenant_fk("outbox", "draft_id", "drafts", set_null=True),
        _one_of("outbox", "status", "queued", "sending", "sent", "failed", "cancelled", "bounced"),
    )
    op.create_index(
        "ix_outbox_tenant_id_status_next_attempt_at",
        "outbox",
        ["tenant_id", "status", "next_attempt_at"],
    )
    op.create_index(
        "ix_outbox_tenant_id_account_id_id", "outbox", ["tenant_id", "account_id", "id"]
    )
    op.create_index(
        "ix_outbox_draft_id",
        "outbox",
        ["tenant_id", "draft_id"],
        postgresql_where=sa.text("draft_id IS NOT NULL"),
    )
    op.create_index(
        "ix_outbox_due",
        "outbox",
        ["next_attempt_at"],
        postgresql_where=sa.text("status IN ('queued', 'sending')"),
    )
    op.create_index(
        "uq_outbox_tenant_id_idempotency_key",
        "outbox",
        ["tenant_id", "idempotency_key"],
        unique=True,
        postgresql_where=sa.text("idempotency_key IS NOT NULL"),
    )

    op.create_table(
        "webhooks",
        _id(),
        _tenant_id(),
        sa.Column("url", sa.String(2048), nullable=False),
        sa.Column(
            "event_types",
            postgresql.ARRAY(sa.String(64)),
            server_default=sa.text("'{}'"),
            nullable=False,
        ),
        _flag("active", default=True),
        sa.Column("secret", sa.Text(), nullable=False),
        sa.Column("description", sa.String(500)),
        _counter("failure_count"),
        sa.Column("disabled_reason", sa.Text()),
        _now("created_at"),
        _now("updated_at"),
        sa.PrimaryKeyConstraint("id", name="pk_webhooks"),
        sa.UniqueConstraint("tenant_id", "id", name="uq_webhooks_tenant_id_id"),
    )

    op.create_table(
        "webhook_deliveries",
        _id(),
        _tenant_id(),
        sa.Column("webhook_id", sa.Uuid(), nullable=False),
        sa.Column("change_id", sa.BigInteger(), nullable=False),
        sa.Column("event_type", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), server_default="pending", nullable=False),
        _counter("attempts"),
        _now("next_attempt_at"),
        sa.Column("last_status_code", sa.Integer()),
        sa.Column("last_error", sa.Text()),
        _timestamp("delivered_at"),
        _now("created_at"),
        sa.PrimaryKeyConstraint("id", name="pk_webhook_deliveries"),
        sa.UniqueConstraint(
            "tenant_id",
            "webhook_id",
            "change_id",
            name="uq_webhook_deliveries_tenant_id_webhook_id_change_id",
        ),
        _tenant_fk("webhook_deliveries", "webhook_id", "webhooks"),
        _one_of("webhook_deliveries", "status", "pending", "delivering", "succeeded", "failed"),
    )
    op.create_index(
        "ix_webhook_deliveries_tenant_id_webhook_id_id",
        "webhook_deliveries",
        ["tenant_id", "webhook_id", "id"],
    )
    op.create_index(
        "ix_webhook_deliveries_due",
        "webhook_deliveries",
        ["next_attempt_at"],
        postgresql_where=sa.text("status IN ('pending', 'delivering')"),
    )


def downgrade() -> None:
    # Dropping a table drops its indexes and constraints with it.
    for table in reversed(TABLES):
        op.drop_table(table)
