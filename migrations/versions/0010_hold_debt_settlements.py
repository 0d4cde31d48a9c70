"""Debt settlements from released holds: a ledger transaction type of their own.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-03

Money a hold stops reserving (the hold is voided or expires) on a wallet whose user owes pays
the debt at once, in the transaction that releases it: one `debt_settlement` transaction per
hold, referenced by the hold's reference and unique like every (type, reference), whose
entries (`debt_settlement`, an entry type revision 0009 added) move the amount from the wallet
to the user's debt account. Only the transactions' type CHECK changes; the enum
`LedgerTransactionType` lists the same values.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0010"
down_revision: str | Sequence[str] | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCHEMA = "transactions"

TRANSACTION_TYPES = (
    "top_up",
    "transfer",
    "refund",
    "refund_reversal",
    "dispute_withdrawal",
    "dispute_reinstatement",
)
SETTLEMENT = "debt_settlement"


def _listed(values: Sequence[str]) -> str:
    return ", ".join(f"'{value}'" for value in values)


def _replace_check(transaction_types: Sequence[str]) -> None:
    op.drop_constraint(
        "ledger_transactions_type_check", "ledger_transactions", schema=SCHEMA, type_="check"
    )
    op.create_check_constraint(
        "ledger_transactions_type_check",
        "ledger_transactions",
        f"type IN ({_listed(transaction_types)})",
        schema=SCHEMA,
    )


def upgrade() -> None:
    """Allow `debt_settlement` transactions."""
    _replace_check((*TRANSACTION_TYPES, SETTLEMENT))


def downgrade() -> None:
    """Refuse them again (fails while one is recorded: the ledger is append-only)."""
    _replace_check(TRANSACTION_TYPES)
