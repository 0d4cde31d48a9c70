"""Money requests: a user asks the owner of an email for an amount.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-05

`transactions.money_requests` holds each request from `open` to `paid` (with the transfer that
paid it, marked in the transfer's own transaction), `declined`, `canceled` or `expired`. A
request to an email the ledger does not know yet keeps `payer_id` empty until that account's
`user.registered` arrives; the partial index on `payer_email` finds the waiting ones. The
statuses are `MoneyRequestStatus`.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0015"
down_revision: str | Sequence[str] | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCHEMA = "transactions"
ROLE = "transactions_service"


def upgrade() -> None:
    """Create transactions.money_requests."""
    op.create_table(
        "money_requests",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("requester_id", sa.Text(), nullable=False),
        sa.Column("requester_email", sa.Text(), nullable=False),
        sa.Column("payer_email", sa.Text(), nullable=False),
        sa.Column("payer_id", sa.Text(), nullable=True),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.Text(), nullable=False),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("status", sa.Text(), server_default=sa.text("'open'"), nullable=False),
        sa.Column("transfer_id", sa.UUID(), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("amount > 0", name="money_requests_amount_check"),
        sa.CheckConstraint("currency ~ '^[A-Z]{3}$'", name="money_requests_currency_check"),
        sa.CheckConstraint("payer_email = lower(payer_email)", name="money_requests_email_check"),
        sa.CheckConstraint(
            "status IN ('open', 'paid', 'declined', 'canceled', 'expired')",
            name="money_requests_status_check",
        ),
        sa.CheckConstraint(
            "(status = 'paid') = (transfer_id IS NOT NULL)", name="money_requests_paid_check"
        ),
        sa.CheckConstraint(
            "(status = 'open') = (resolved_at IS NULL)", name="money_requests_resolved_check"
        ),
        sa.ForeignKeyConstraint(
            ["transfer_id"],
            [f"{SCHEMA}.ledger_transactions.id"],
            name="money_requests_transfer_id_fkey",
        ),
        sa.PrimaryKeyConstraint("id", name="money_requests_pkey"),
        sa.UniqueConstraint("transfer_id", name="money_requests_transfer_key"),
        schema=SCHEMA,
    )
    op.create_index(
        "money_requests_requester_idx",
        "money_requests",
        ["requester_id", sa.literal_column("created_at DESC"), sa.literal_column("id DESC")],
        schema=SCHEMA,
    )
    op.create_index(
        "money_requests_payer_idx",
        "money_requests",
        ["payer_id", sa.literal_column("created_at DESC"), sa.literal_column("id DESC")],
        schema=SCHEMA,
    )
    op.create_index(
        "money_requests_waiting_idx",
        "money_requests",
        ["payer_email"],
        schema=SCHEMA,
        postgresql_where=sa.text("payer_id IS NULL AND status = 'open'"),
    )
    op.create_index(
        "money_requests_open_expiry_idx",
        "money_requests",
        ["expires_at"],
        schema=SCHEMA,
        postgresql_where=sa.text("status = 'open'"),
    )
    # Granted here, so the grants made after every upgrade leave it narrowed: requests are
    # closed by their status, never deleted.
    op.execute(f"REVOKE ALL ON TABLE {SCHEMA}.money_requests FROM {ROLE}")
    op.execute(f"GRANT SELECT, INSERT, UPDATE ON TABLE {SCHEMA}.money_requests TO {ROLE}")


def downgrade() -> None:
    """Drop transactions.money_requests."""
    op.drop_table("money_requests", schema=SCHEMA)
