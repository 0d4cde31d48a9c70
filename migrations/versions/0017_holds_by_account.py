"""Holds by account and time: a wallet's balance at an instant reads the holds it had then.

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-02

`GET /transactions/balance?at=` sums the holds a wallet had placed and not yet resolved at the
instant, captured, voided and expired ones included: the partial index of active holds does not
cover them, and without this one each such read would scan the whole holds table.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0017"
down_revision: str | Sequence[str] | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCHEMA = "transactions"


def upgrade() -> None:
    """Index holds by (account_id, created_at)."""
    op.create_index(
        "holds_account_created_idx", "holds", ["account_id", "created_at"], schema=SCHEMA
    )


def downgrade() -> None:
    """Drop the index."""
    op.drop_index("holds_account_created_idx", table_name="holds", schema=SCHEMA)
