"""Baseline: the schema the first release's PostgreSQL.sql made.

Revision ID: 0001
Revises:
Create Date: 2025-12-02

Schemas, tables, indexes and constraints of the four services, each name spelled as that
release's PostgreSQL.sql left it (PostgreSQL's own names for the constraints it did not name),
so a database made by it and stamped at this revision is exactly a fresh one. The service roles
and their grants are not part of any revision: every upgrade creates and grants them from the
service registry (migrations/access.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCHEMAS = ("auth", "payments", "transactions", "notifications")
NOW = sa.text("now()")


def _created_at(name: str = "created_at") -> sa.Column[Any]:
    return sa.Column(name, sa.DateTime(timezone=True), server_default=NOW, nullable=False)


def _timestamp(name: str, *, nullable: bool = True) -> sa.Column[Any]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def _text(name: str, *, nullable: bool = True) -> sa.Column[Any]:
    return sa.Column(name, sa.Text(), nullable=nullable)


def _identity_id() -> sa.Column[Any]:
    return sa.Column("id", sa.BigInteger(), sa.Identity(always=True), nullable=False)


def _uuid(name: str, *, nullable: bool = True) -> sa.Column[Any]:
    return sa.Column(name, postgresql.UUID(), nullable=nullable)


def upgrade() -> None:
    """Create the first release's schemas, tables, indexes and constraints."""
    for schema in SCHEMAS:
        op.execute(sa.text(f"CREATE SCHEMA {schema}"))
    for schema in SCHEMAS:
        _messaging_tables(schema)
    _auth()
    _payments()
    _transactions()
    _notifications()


def downgrade() -> None:
    """The baseline is never undone: that would drop every table and the money in them."""
    raise NotImplementedError("the baseline cannot be downgraded; restore a backup instead")


def _messaging_tables(schema: str) -> None:
    """outbox, inbox and idempotency_keys: every schema has them."""
    op.create_table(
        "outbox",
        _identity_id(),
        _uuid("event_id", nullable=False),
        _text("event_type", nullable=False),
        _text("consumer", nullable=False),
        sa.Column("payload", postgresql.JSONB(), nullable=False),
        sa.Column("status", sa.Text(), server_default=sa.text("'pending'"), nullable=False),
        sa.Column("attempts", sa.Integer(), server_default=sa.text("0"), nullable=False),
        _created_at("next_attempt_at"),
        _text("last_error"),
        _created_at(),
        _timestamp("delivered_at"),
        sa.CheckConstraint(
            "status IN ('pending', 'delivered', 'dead')", name="outbox_status_check"
        ),
        sa.CheckConstraint("attempts >= 0", name="outbox_attempts_check"),
        sa.PrimaryKeyConstraint("id", name="outbox_pkey"),
        sa.UniqueConstraint("event_id", "consumer", name="outbox_event_consumer_key"),
        schema=schema,
    )
    op.create_index(
        "outbox_pending_idx",
        "outbox",
        ["next_attempt_at"],
        schema=schema,
        postgresql_where=sa.text("status = 'pending'"),
    )
    op.create_table(
        "inbox",
        _uuid("event_id", nullable=False),
        _text("event_type", nullable=False),
        _text("producer", nullable=False),
        _created_at("received_at"),
        sa.PrimaryKeyConstraint("event_id", name="inbox_pkey"),
        schema=schema,
    )
    op.create_table(
        "idempotency_keys",
        _identity_id(),
        _text("owner", nullable=False),
        _text("key", nullable=False),
        _text("method", nullable=False),
        _text("path", nullable=False),
        _text("request_hash", nullable=False),
        sa.Column("response_status", sa.Integer(), nullable=True),
        sa.Column("response_body", postgresql.JSONB(), nullable=True),
        _text("response_media_type"),
        _created_at(),
        _timestamp("completed_at"),
        _timestamp("expires_at", nullable=False),
        sa.CheckConstraint("length(key) BETWEEN 1 AND 255", name="idempotency_keys_key_check"),
        sa.PrimaryKeyConstraint("id", name="idempotency_keys_pkey"),
        sa.UniqueConstraint("owner", "key", name="idempotency_keys_owner_key"),
        schema=schema,
    )
    op.create_index(
        "idempotency_keys_expires_idx", "idempotency_keys", ["expires_at"], schema=schema
    )


def _auth() -> None:
    schema = "auth"
    op.create_table(
        "users",
        _uuid("id", nullable=False),
        _text("email", nullable=False),
        _created_at(),
        _timestamp("confirmed_at"),
        sa.CheckConstraint(
            "email = lower(btrim(email)) AND email <> ''", name="users_email_normalised_check"
        ),
        sa.PrimaryKeyConstraint("id", name="users_pkey"),
        sa.UniqueConstraint("email", name="users_email_key"),
        schema=schema,
    )
    op.create_index(
        "users_created_idx",
        "users",
        [sa.text("created_at DESC"), sa.text("id DESC")],
        schema=schema,
    )
    op.create_table(
        "sessions",
        _text("origin_jti", nullable=False),
        _uuid("user_id", nullable=False),
        _text("refresh_token_hash", nullable=False),
        _timestamp("access_expires_at", nullable=False),
        _timestamp("expires_at", nullable=False),
        _created_at(),
        _timestamp("revoked_at"),
        sa.PrimaryKeyConstraint("origin_jti", name="sessions_pkey"),
        sa.UniqueConstraint("refresh_token_hash", name="sessions_refresh_token_hash_key"),
        schema=schema,
    )
    op.create_index(
        "sessions_user_idx",
        "sessions",
        ["user_id"],
        schema=schema,
        postgresql_where=sa.text("revoked_at IS NULL"),
    )
    op.create_index("sessions_expires_idx", "sessions", ["expires_at"], schema=schema)
    op.create_table(
        "revoked_tokens",
        _text("origin_jti", nullable=False),
        _uuid("user_id", nullable=False),
        _timestamp("expires_at", nullable=False),
        _created_at("revoked_at"),
        sa.PrimaryKeyConstraint("origin_jti", name="revoked_tokens_pkey"),
        schema=schema,
    )
    op.create_index("revoked_tokens_expires_idx", "revoked_tokens", ["expires_at"], schema=schema)
    op.create_table(
        "login_failures",
        _identity_id(),
        _text("email", nullable=False),
        _text("client_ip", nullable=False),
        _created_at("failed_at"),
        sa.PrimaryKeyConstraint("id", name="login_failures_pkey"),
        schema=schema,
    )
    op.create_index(
        "login_failures_email_idx", "login_failures", ["email", "failed_at"], schema=schema
    )
    op.create_index(
        "login_failures_client_ip_idx", "login_failures", ["client_ip", "failed_at"], schema=schema
    )
    op.create_index("login_failures_failed_at_idx", "login_failures", ["failed_at"], schema=schema)


def _payments() -> None:
    schema = "payments"
    op.create_table(
        "payments",
        _uuid("id", nullable=False),
        _text("user_id", nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        _text("currency", nullable=False),
        sa.Column("amount_refunded", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        _text("status", nullable=False),
        _text("payment_method", nullable=False),
        _text("description"),
        _text("idempotency_key", nullable=False),
        _text("request_hash", nullable=False),
        _text("stripe_payment_intent_id"),
        _text("stripe_charge_id"),
        _text("client_secret"),
        sa.Column("next_action", postgresql.JSONB(), nullable=True),
        _text("failure_code"),
        _text("failure_message"),
        _text("decline_code"),
        _timestamp("lease_expires_at"),
        _created_at(),
        _created_at("updated_at"),
        sa.CheckConstraint("amount > 0", name="payments_amount_check"),
        sa.CheckConstraint("currency ~ '^[A-Z]{3}$'", name="payments_currency_check"),
        sa.CheckConstraint(
            "status IN ('processing', 'requires_action', 'succeeded', 'failed')",
            name="payments_status_check",
        ),
        sa.CheckConstraint(
            "amount_refunded >= 0 AND amount_refunded <= amount",
            name="payments_amount_refunded_check",
        ),
        sa.PrimaryKeyConstraint("id", name="payments_pkey"),
        sa.UniqueConstraint("user_id", "idempotency_key", name="payments_user_idempotency_key"),
        sa.UniqueConstraint("stripe_payment_intent_id", name="payments_stripe_payment_intent_key"),
        schema=schema,
    )
    op.create_index(
        "payments_user_created_idx",
        "payments",
        ["user_id", sa.text("created_at DESC"), sa.text("id DESC")],
        schema=schema,
    )
    op.create_index(
        "payments_created_idx",
        "payments",
        [sa.text("created_at DESC"), sa.text("id DESC")],
        schema=schema,
    )
    op.create_index(
        "payments_unsettled_idx",
        "payments",
        ["updated_at"],
        schema=schema,
        postgresql_where=sa.text("status IN ('processing', 'requires_action')"),
    )
    op.create_index("payments_stripe_charge_idx", "payments", ["stripe_charge_id"], schema=schema)
    op.create_table(
        "refunds",
        _uuid("id", nullable=False),
        _uuid("payment_id", nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        _text("currency", nullable=False),
        _text("status", nullable=False),
        _text("origin", nullable=False),
        _text("reason"),
        _text("requested_by"),
        _text("idempotency_key"),
        _text("request_hash"),
        _text("hold_id"),
        _text("stripe_refund_id"),
        _text("failure_code"),
        _text("failure_message"),
        _timestamp("lease_expires_at"),
        _created_at(),
        _created_at("updated_at"),
        sa.CheckConstraint("amount > 0", name="refunds_amount_check"),
        sa.CheckConstraint(
            "status IN ('pending', 'succeeded', 'failed')", name="refunds_status_check"
        ),
        sa.CheckConstraint("origin IN ('api', 'stripe')", name="refunds_origin_check"),
        sa.CheckConstraint(
            "origin <> 'api' OR (requested_by IS NOT NULL AND idempotency_key IS NOT NULL "
            "AND request_hash IS NOT NULL)",
            name="refunds_api_request_check",
        ),
        sa.ForeignKeyConstraint(
            ["payment_id"], ["payments.payments.id"], name="refunds_payment_id_fkey"
        ),
        sa.PrimaryKeyConstraint("id", name="refunds_pkey"),
        sa.UniqueConstraint(
            "requested_by", "idempotency_key", name="refunds_requester_idempotency_key"
        ),
        sa.UniqueConstraint("stripe_refund_id", name="refunds_stripe_refund_key"),
        schema=schema,
    )
    op.create_index(
        "refunds_payment_idx",
        "refunds",
        ["payment_id", sa.text("created_at DESC")],
        schema=schema,
    )
    op.create_index(
        "refunds_pending_idx",
        "refunds",
        ["updated_at"],
        schema=schema,
        postgresql_where=sa.text("status = 'pending'"),
    )
    op.create_table(
        "stripe_events",
        _text("id", nullable=False),
        _text("type", nullable=False),
        _text("outcome", nullable=False),
        sa.Column("payload", postgresql.JSONB(), nullable=False),
        _created_at("received_at"),
        sa.CheckConstraint("outcome IN ('applied', 'ignored')", name="stripe_events_outcome_check"),
        sa.PrimaryKeyConstraint("id", name="stripe_events_pkey"),
        schema=schema,
    )


def _transactions() -> None:
    schema = "transactions"
    op.create_table(
        "accounts",
        _identity_id(),
        _text("kind", nullable=False),
        _text("user_id"),
        _text("system_code"),
        _text("currency", nullable=False),
        sa.Column("balance", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        sa.Column("held", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        _created_at(),
        sa.CheckConstraint("kind IN ('user', 'system')", name="accounts_kind_check"),
        sa.CheckConstraint("currency ~ '^[A-Z]{3}$'", name="accounts_currency_check"),
        sa.CheckConstraint(
            "(kind = 'user') = (user_id IS NOT NULL) "
            "AND (kind = 'system') = (system_code IS NOT NULL)",
            name="accounts_owner_check",
        ),
        sa.CheckConstraint("held >= 0 AND (kind = 'user' OR held = 0)", name="accounts_held_check"),
        sa.CheckConstraint("kind <> 'user' OR balance >= 0", name="accounts_wallet_balance_check"),
        sa.CheckConstraint(
            "kind <> 'user' OR balance - held >= 0", name="accounts_wallet_available_check"
        ),
        sa.PrimaryKeyConstraint("id", name="accounts_pkey"),
        sa.UniqueConstraint("user_id", "currency", name="accounts_user_currency_key"),
        sa.UniqueConstraint("system_code", "currency", name="accounts_system_currency_key"),
        schema=schema,
    )
    op.create_table(
        "users",
        _text("user_id", nullable=False),
        _text("email", nullable=False),
        _created_at("registered_at"),
        sa.CheckConstraint("email = lower(email)", name="users_email_lower_check"),
        sa.PrimaryKeyConstraint("user_id", name="users_pkey"),
        sa.UniqueConstraint("email", name="users_email_key"),
        schema=schema,
    )
    op.create_table(
        "ledger_transactions",
        _uuid("id", nullable=False),
        _text("type", nullable=False),
        _text("reference", nullable=False),
        _text("description"),
        _created_at(),
        sa.CheckConstraint(
            "type IN ('top_up', 'transfer', 'refund')", name="ledger_transactions_type_check"
        ),
        sa.PrimaryKeyConstraint("id", name="ledger_transactions_pkey"),
        sa.UniqueConstraint("type", "reference", name="ledger_transactions_type_reference_key"),
        schema=schema,
    )
    op.create_table(
        "entries",
        _identity_id(),
        _uuid("transaction_id", nullable=False),
        sa.Column("account_id", sa.BigInteger(), nullable=False),
        _text("type", nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        _text("currency", nullable=False),
        sa.Column("balance_after", sa.BigInteger(), nullable=False),
        _text("counterparty_user_id"),
        _created_at(),
        sa.CheckConstraint(
            "type IN ('top_up', 'transfer_in', 'transfer_out', 'refund')",
            name="entries_type_check",
        ),
        sa.CheckConstraint("amount <> 0", name="entries_amount_check"),
        sa.ForeignKeyConstraint(
            ["transaction_id"],
            ["transactions.ledger_transactions.id"],
            name="entries_transaction_id_fkey",
        ),
        sa.ForeignKeyConstraint(
            ["account_id"], ["transactions.accounts.id"], name="entries_account_id_fkey"
        ),
        sa.PrimaryKeyConstraint("id", name="entries_pkey"),
        schema=schema,
    )
    op.create_index(
        "entries_account_history_idx",
        "entries",
        ["account_id", sa.text("created_at DESC"), sa.text("id DESC")],
        schema=schema,
    )
    op.create_index(
        "entries_account_type_history_idx",
        "entries",
        ["account_id", "type", sa.text("created_at DESC"), sa.text("id DESC")],
        schema=schema,
    )
    op.create_index("entries_transaction_idx", "entries", ["transaction_id"], schema=schema)
    op.create_table(
        "holds",
        _uuid("id", nullable=False),
        sa.Column("account_id", sa.BigInteger(), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        _text("currency", nullable=False),
        _text("reference", nullable=False),
        sa.Column("status", sa.Text(), server_default=sa.text("'active'"), nullable=False),
        _timestamp("expires_at", nullable=False),
        _uuid("transaction_id"),
        _created_at(),
        _timestamp("resolved_at"),
        sa.CheckConstraint("amount > 0", name="holds_amount_check"),
        sa.CheckConstraint(
            "status IN ('active', 'captured', 'voided', 'expired')", name="holds_status_check"
        ),
        sa.CheckConstraint(
            "(status = 'captured') = (transaction_id IS NOT NULL)", name="holds_capture_check"
        ),
        sa.ForeignKeyConstraint(
            ["account_id"], ["transactions.accounts.id"], name="holds_account_id_fkey"
        ),
        sa.ForeignKeyConstraint(
            ["transaction_id"],
            ["transactions.ledger_transactions.id"],
            name="holds_transaction_id_fkey",
        ),
        sa.PrimaryKeyConstraint("id", name="holds_pkey"),
        sa.UniqueConstraint("reference", name="holds_reference_key"),
        schema=schema,
    )
    op.create_index(
        "holds_active_expiry_idx",
        "holds",
        ["expires_at"],
        schema=schema,
        postgresql_where=sa.text("status = 'active'"),
    )
    op.create_index(
        "holds_active_account_idx",
        "holds",
        ["account_id"],
        schema=schema,
        postgresql_where=sa.text("status = 'active'"),
    )


def _notifications() -> None:
    schema = "notifications"
    op.create_table(
        "users",
        _text("user_id", nullable=False),
        _text("email"),
        _created_at(),
        _created_at("updated_at"),
        sa.PrimaryKeyConstraint("user_id", name="users_pkey"),
        schema=schema,
    )
    op.create_table(
        "webhook_endpoints",
        _uuid("id", nullable=False),
        _text("user_id", nullable=False),
        _text("url", nullable=False),
        sa.Column("event_types", postgresql.JSONB(), nullable=False),
        _text("secret", nullable=False),
        sa.Column("status", sa.Text(), server_default=sa.text("'enabled'"), nullable=False),
        _text("disabled_reason"),
        _created_at(),
        _created_at("updated_at"),
        sa.CheckConstraint(
            "jsonb_typeof(event_types) = 'array'", name="webhook_endpoints_events_check"
        ),
        sa.CheckConstraint(
            "status IN ('enabled', 'disabled', 'deleted')", name="webhook_endpoints_status_check"
        ),
        sa.PrimaryKeyConstraint("id", name="webhook_endpoints_pkey"),
        schema=schema,
    )
    op.create_index(
        "webhook_endpoints_user_idx",
        "webhook_endpoints",
        ["user_id", "created_at"],
        schema=schema,
    )
    op.create_table(
        "notifications",
        _uuid("id", nullable=False),
        _uuid("event_id", nullable=False),
        _text("event_type", nullable=False),
        _text("user_id", nullable=False),
        _text("channel", nullable=False),
        _uuid("webhook_endpoint_id"),
        _text("recipient"),
        _text("subject", nullable=False),
        _text("body_text", nullable=False),
        _text("body_html"),
        sa.Column("payload", postgresql.JSONB(), nullable=False),
        sa.Column("status", sa.Text(), server_default=sa.text("'pending'"), nullable=False),
        sa.Column("attempts", sa.Integer(), server_default=sa.text("0"), nullable=False),
        _created_at("next_attempt_at"),
        _timestamp("locked_until"),
        _uuid("lease_token"),
        sa.Column(
            "delivered_to",
            postgresql.JSONB(),
            server_default=sa.text("'[]'::jsonb"),
            nullable=False,
        ),
        _text("provider_message_id"),
        _text("last_error"),
        _created_at(),
        _created_at("updated_at"),
        _timestamp("sent_at"),
        sa.CheckConstraint(
            "channel IN ('email', 'push', 'webhook')", name="notifications_channel_check"
        ),
        sa.CheckConstraint(
            "status IN ('pending', 'sent', 'failed')", name="notifications_status_check"
        ),
        sa.CheckConstraint("attempts >= 0", name="notifications_attempts_check"),
        sa.CheckConstraint(
            "(channel = 'webhook') = (webhook_endpoint_id IS NOT NULL)",
            name="notifications_webhook_endpoint_check",
        ),
        sa.ForeignKeyConstraint(
            ["webhook_endpoint_id"],
            ["notifications.webhook_endpoints.id"],
            name="notifications_webhook_endpoint_id_fkey",
        ),
        sa.PrimaryKeyConstraint("id", name="notifications_pkey"),
        sa.UniqueConstraint(
            "event_id",
            "user_id",
            "channel",
            "webhook_endpoint_id",
            name="notifications_event_user_channel_key",
            postgresql_nulls_not_distinct=True,
        ),
        schema=schema,
    )
    op.create_index(
        "notifications_user_idx",
        "notifications",
        ["user_id", "created_at", "id"],
        schema=schema,
    )
    op.create_index(
        "notifications_due_idx",
        "notifications",
        ["next_attempt_at"],
        schema=schema,
        postgresql_where=sa.text("status = 'pending'"),
    )
    op.create_index(
        "notifications_awaiting_email_idx",
        "notifications",
        ["user_id"],
        schema=schema,
        postgresql_where=sa.text("status = 'pending' AND channel = 'email' AND recipient IS NULL"),
    )
    op.create_index(
        "notifications_webhook_endpoint_idx",
        "notifications",
        ["webhook_endpoint_id"],
        schema=schema,
        postgresql_where=sa.text("webhook_endpoint_id IS NOT NULL"),
    )
    op.create_table(
        "devices",
        _uuid("id", nullable=False),
        _text("user_id", nullable=False),
        _text("platform", nullable=False),
        _text("token", nullable=False),
        _text("endpoint_arn", nullable=False),
        sa.Column("enabled", sa.Boolean(), server_default=sa.text("true"), nullable=False),
        _text("disabled_reason"),
        _created_at(),
        _created_at("updated_at"),
        sa.CheckConstraint(
            "platform IN ('apns', 'apns_sandbox', 'fcm')", name="devices_platform_check"
        ),
        sa.PrimaryKeyConstraint("id", name="devices_pkey"),
        sa.UniqueConstraint("platform", "token", name="devices_platform_token_key"),
        schema=schema,
    )
    op.create_index("devices_user_idx", "devices", ["user_id"], schema=schema)
    op.create_table(
        "webhook_attempts",
        _identity_id(),
        _uuid("notification_id", nullable=False),
        _uuid("endpoint_id", nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        _text("url", nullable=False),
        sa.Column("succeeded", sa.Boolean(), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=True),
        _text("response_body"),
        _text("error"),
        sa.Column("duration_ms", sa.Integer(), nullable=False),
        _created_at("attempted_at"),
        sa.ForeignKeyConstraint(
            ["notification_id"],
            ["notifications.notifications.id"],
            name="webhook_attempts_notification_id_fkey",
        ),
        sa.ForeignKeyConstraint(
            ["endpoint_id"],
            ["notifications.webhook_endpoints.id"],
            name="webhook_attempts_endpoint_id_fkey",
        ),
        sa.PrimaryKeyConstraint("id", name="webhook_attempts_pkey"),
        schema=schema,
    )
    op.create_index(
        "webhook_attempts_endpoint_idx", "webhook_attempts", ["endpoint_id", "id"], schema=schema
    )
    op.create_index(
        "webhook_attempts_notification_idx",
        "webhook_attempts",
        ["notification_id"],
        schema=schema,
    )
