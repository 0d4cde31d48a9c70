"""Refund reversals: a ledger transaction type and entry type of their own.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02

A refund Stripe fails (or cancels) after the wallet was debited for it is undone by one
`refund_reversal` transaction, unique per refund like every (type, reference), whose entries
mirror the refund's debit (`refund_reversal` entries). Only the two CHECKs change; the enums
`LedgerTransactionType` and `EntryType` list the same values.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCHEMA = "transactions"

TRANSACTION_TYPES = ("top_up", "transfer", "refund")
ENTRY_TYPES = ("top_up", "transfer_in", "transfer_out", "refund")
REVERSAL = "refund_reversal"


def _listed(values: Sequence[str]) -> str:
    return ", ".join(f"'{value}'" for value in values)


def _replace_checks(transaction_types: Sequence[str], entry_types: Sequence[str]) -> None:
    op.drop_constraint(
        "ledger_transactions_type_check", "ledger_transactions", schema=SCHEMA, type_="check"
    )
    op.create_check_constraint(
        "ledger_transactions_type_check",
        "ledger_transactions",
        f"type IN ({_listed(transaction_types)})",
        schema=SCHEMA,
    )
    op.drop_constraint("entries_type_check", "entries", schema=SCHEMA, type_="check")
    op.create_check_constraint(
        "entries_type_check", "entries", f"type IN ({_listed(entry_types)})", schema=SCHEMA
    )


def upgrade() -> None:
    """Allow `refund_reversal` transactions and entries."""
    _replace_checks((*TRANSACTION_TYPES, REVERSAL), (*ENTRY_TYPES, REVERSAL))


def downgrade() -> None:
    """Refuse them again (fails while a reversal is recorded: the ledger is append-only)."""
    _replace_checks(TRANSACTION_TYPES, ENTRY_TYPES)
