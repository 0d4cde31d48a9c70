"""PayPal: a second provider of top-ups, its refunds and its webhook inbox.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-02

A payment names its provider (`stripe` for every existing row, or `paypal`); a PayPal payment
has no Stripe PaymentMethod but its PayPal order and capture ids and the buyer's return and
cancel URLs, and may end `canceled` (the buyer never approved). A refund of a PayPal capture
records PayPal's refund id, and refunds PayPal made itself are of the origin `paypal`.
`payments.paypal_events` records verified PayPal webhook events, as `stripe_events` does
Stripe's.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | Sequence[str] | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

PAYMENTS = "payments"
PAYMENT_ROLE = "payment_service"

STATUSES = ("processing", "requires_action", "succeeded", "failed")
ORIGINS = ("api", "stripe")


def _listed(values: Sequence[str]) -> str:
    return ", ".join(f"'{value}'" for value in values)


def _replace_check(table: str, name: str, condition: str) -> None:
    op.drop_constraint(name, table, schema=PAYMENTS, type_="check")
    op.create_check_constraint(name, table, condition, schema=PAYMENTS)


def upgrade() -> None:
    """Add the provider and the PayPal columns, the `canceled` status and paypal_events."""
    op.add_column(
        "payments",
        sa.Column("provider", sa.Text(), server_default=sa.text("'stripe'"), nullable=False),
        schema=PAYMENTS,
    )
    op.alter_column("payments", "payment_method", nullable=True, schema=PAYMENTS)
    for column in ("paypal_order_id", "paypal_capture_id", "return_url", "cancel_url"):
        op.add_column("payments", sa.Column(column, sa.Text(), nullable=True), schema=PAYMENTS)
    op.create_check_constraint(
        "payments_provider_check", "payments", "provider IN ('stripe', 'paypal')", schema=PAYMENTS
    )
    op.create_check_constraint(
        "payments_stripe_method_check",
        "payments",
        "provider <> 'stripe' OR payment_method IS NOT NULL",
        schema=PAYMENTS,
    )
    op.create_check_constraint(
        "payments_paypal_urls_check",
        "payments",
        "provider <> 'paypal' OR (return_url IS NOT NULL AND cancel_url IS NOT NULL)",
        schema=PAYMENTS,
    )
    _replace_check(
        "payments", "payments_status_check", f"status IN ({_listed((*STATUSES, 'canceled'))})"
    )
    op.create_unique_constraint(
        "payments_paypal_order_key", "payments", ["paypal_order_id"], schema=PAYMENTS
    )
    op.create_index(
        "payments_paypal_capture_idx", "payments", ["paypal_capture_id"], schema=PAYMENTS
    )

    op.add_column(
        "refunds", sa.Column("paypal_refund_id", sa.Text(), nullable=True), schema=PAYMENTS
    )
    op.create_unique_constraint(
        "refunds_paypal_refund_key", "refunds", ["paypal_refund_id"], schema=PAYMENTS
    )
    _replace_check(
        "refunds", "refunds_origin_check", f"origin IN ({_listed((*ORIGINS, 'paypal'))})"
    )

    op.create_table(
        "paypal_events",
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("type", sa.Text(), nullable=False),
        sa.Column("outcome", sa.Text(), nullable=False),
        sa.Column("payload", sa.dialects.postgresql.JSONB(), nullable=False),
        sa.Column(
            "received_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint("outcome IN ('applied', 'ignored')", name="paypal_events_outcome_check"),
        sa.PrimaryKeyConstraint("id", name="paypal_events_pkey"),
        schema=PAYMENTS,
    )
    # As stripe_events: the outcome is written once handled, nothing is deleted.
    op.execute(f"REVOKE ALL ON TABLE {PAYMENTS}.paypal_events FROM {PAYMENT_ROLE}")
    op.execute(f"GRANT SELECT, INSERT, UPDATE ON TABLE {PAYMENTS}.paypal_events TO {PAYMENT_ROLE}")


def downgrade() -> None:
    """Drop them again (fails while a PayPal payment or refund exists)."""
    op.drop_table("paypal_events", schema=PAYMENTS)
    _replace_check("refunds", "refunds_origin_check", f"origin IN ({_listed(ORIGINS)})")
    op.drop_constraint("refunds_paypal_refund_key", "refunds", schema=PAYMENTS, type_="unique")
    op.drop_column("refunds", "paypal_refund_id", schema=PAYMENTS)
    op.drop_index("payments_paypal_capture_idx", table_name="payments", schema=PAYMENTS)
    op.drop_constraint("payments_paypal_order_key", "payments", schema=PAYMENTS, type_="unique")
    _replace_check("payments", "payments_status_check", f"status IN ({_listed(STATUSES)})")
    for name in (
        "payments_paypal_urls_check",
        "payments_stripe_method_check",
        "payments_provider_check",
    ):
        op.drop_constraint(name, "payments", schema=PAYMENTS, type_="check")
    for column in ("cancel_url", "return_url", "paypal_capture_id", "paypal_order_id"):
        op.drop_column("payments", column, schema=PAYMENTS)
    op.alter_column("payments", "payment_method", nullable=False, schema=PAYMENTS)
    op.drop_column("payments", "provider", schema=PAYMENTS)
