"""Disputes: the payment service's dispute records, users' debt accounts and the ledger's types.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02

A card holder's dispute of a top-up is recorded in `payments.disputes` (one row per Stripe
dispute, its status and where its money stands). When Stripe withdraws the disputed amount,
the transactions service takes it from the wallet as far as its available balance covers it
and records the rest as owed in the user's debt account: an account of the new kind `debt`,
owned through `debtor_id` (never `user_id`, which names wallets), whose balance is never
positive. The ledger gains the transaction types `dispute_withdrawal` and
`dispute_reinstatement` and the entry types of the same names, `dispute_fee` and
`debt_settlement`; the enums list the same values (docs/migrations.md, "Disputes").
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | Sequence[str] | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

PAYMENTS = "payments"
TRANSACTIONS = "transactions"
PAYMENT_ROLE = "payment_service"

TRANSACTION_TYPES = ("top_up", "transfer", "refund", "refund_reversal")
ENTRY_TYPES = ("top_up", "transfer_in", "transfer_out", "refund", "refund_reversal")
NEW_TRANSACTION_TYPES = ("dispute_withdrawal", "dispute_reinstatement")
NEW_ENTRY_TYPES = ("dispute_withdrawal", "dispute_reinstatement", "dispute_fee", "debt_settlement")

OWNER_BEFORE = (
    "(kind = 'user') = (user_id IS NOT NULL) AND (kind = 'system') = (system_code IS NOT NULL)"
)
OWNER_AFTER = f"{OWNER_BEFORE} AND (kind = 'debt') = (debtor_id IS NOT NULL)"


def _listed(values: Sequence[str]) -> str:
    return ", ".join(f"'{value}'" for value in values)


def _replace_check(table: str, name: str, condition: str) -> None:
    op.drop_constraint(name, table, schema=TRANSACTIONS, type_="check")
    op.create_check_constraint(name, table, condition, schema=TRANSACTIONS)


def _ledger_checks(
    kinds: Sequence[str], transaction_types: Sequence[str], entry_types: Sequence[str], owner: str
) -> None:
    _replace_check("accounts", "accounts_kind_check", f"kind IN ({_listed(kinds)})")
    _replace_check("accounts", "accounts_owner_check", owner)
    _replace_check(
        "ledger_transactions",
        "ledger_transactions_type_check",
        f"type IN ({_listed(transaction_types)})",
    )
    _replace_check("entries", "entries_type_check", f"type IN ({_listed(entry_types)})")


def upgrade() -> None:
    """Create payments.disputes; add debt accounts and the dispute types to the ledger."""
    op.create_table(
        "disputes",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("payment_id", sa.UUID(), nullable=False),
        sa.Column("stripe_dispute_id", sa.Text(), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.Text(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("stripe_status", sa.Text(), nullable=False),
        sa.Column("funds", sa.Text(), nullable=False),
        sa.Column("fee", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        sa.Column("fee_currency", sa.Text(), nullable=True),
        sa.Column("fee_returned", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
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
        sa.Column("funds_withdrawn_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("funds_reinstated_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("amount > 0", name="disputes_amount_check"),
        sa.CheckConstraint("currency ~ '^[A-Z]{3}$'", name="disputes_currency_check"),
        sa.CheckConstraint(
            "fee >= 0 AND fee_returned >= 0 AND fee_returned <= fee", name="disputes_fee_check"
        ),
        sa.CheckConstraint("status IN ('open', 'won', 'lost')", name="disputes_status_check"),
        sa.CheckConstraint(
            "funds IN ('none', 'withdrawn', 'reinstated')", name="disputes_funds_check"
        ),
        sa.ForeignKeyConstraint(
            ["payment_id"], [f"{PAYMENTS}.payments.id"], name="disputes_payment_id_fkey"
        ),
        sa.PrimaryKeyConstraint("id", name="disputes_pkey"),
        sa.UniqueConstraint("stripe_dispute_id", name="disputes_stripe_dispute_key"),
        schema=PAYMENTS,
    )
    op.create_index(
        "disputes_payment_idx",
        "disputes",
        ["payment_id", sa.literal_column("created_at DESC")],
        schema=PAYMENTS,
    )
    # Granted here, so the grants made after every upgrade leave it narrowed.
    op.execute(f"REVOKE ALL ON TABLE {PAYMENTS}.disputes FROM {PAYMENT_ROLE}")
    op.execute(f"GRANT SELECT, INSERT, UPDATE ON TABLE {PAYMENTS}.disputes TO {PAYMENT_ROLE}")

    op.add_column("accounts", sa.Column("debtor_id", sa.Text(), nullable=True), schema=TRANSACTIONS)
    op.create_unique_constraint(
        "accounts_debtor_currency_key",
        "accounts",
        ["debtor_id", "currency"],
        schema=TRANSACTIONS,
    )
    op.create_check_constraint(
        "accounts_debt_balance_check",
        "accounts",
        "kind <> 'debt' OR balance <= 0",
        schema=TRANSACTIONS,
    )
    _ledger_checks(
        ("user", "system", "debt"),
        (*TRANSACTION_TYPES, *NEW_TRANSACTION_TYPES),
        (*ENTRY_TYPES, *NEW_ENTRY_TYPES),
        OWNER_AFTER,
    )


def downgrade() -> None:
    """Drop them again (fails once a dispute was posted: the ledger is append-only)."""
    _ledger_checks(("user", "system"), TRANSACTION_TYPES, ENTRY_TYPES, OWNER_BEFORE)
    op.drop_constraint(
        "accounts_debt_balance_check", "accounts", schema=TRANSACTIONS, type_="check"
    )
    op.drop_constraint(
        "accounts_debtor_currency_key", "accounts", schema=TRANSACTIONS, type_="unique"
    )
    op.drop_column("accounts", "debtor_id", schema=TRANSACTIONS)
    op.drop_index("disputes_payment_idx", table_name="disputes", schema=PAYMENTS)
    op.drop_table("disputes", schema=PAYMENTS)
