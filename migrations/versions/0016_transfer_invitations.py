"""Transfer invitations: money sent to an email that has no account yet.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-05

`transactions.transfer_invitations` holds a transfer to an email without an account while its
amount is held on the sender's wallet (`hold_id`, one invitation per hold): `pending` until
that email's `user.registered` completes it (a transfer whose id is the invitation's, the hold
captured by it), or the sender cancels it, or it expires (the hold released). The partial
indexes find the invitations waiting for an email and those due to expire. The statuses are
`InvitationStatus`.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0016"
down_revision: str | Sequence[str] | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCHEMA = "transactions"
ROLE = "transactions_service"


def upgrade() -> None:
    """Create transactions.transfer_invitations."""
    op.create_table(
        "transfer_invitations",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("sender_id", sa.Text(), nullable=False),
        sa.Column("sender_email", sa.Text(), nullable=False),
        sa.Column("to_email", sa.Text(), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.Text(), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("hold_id", sa.UUID(), nullable=False),
        sa.Column("status", sa.Text(), server_default=sa.text("'pending'"), nullable=False),
        sa.Column("recipient_id", sa.Text(), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("amount > 0", name="transfer_invitations_amount_check"),
        sa.CheckConstraint("currency ~ '^[A-Z]{3}$'", name="transfer_invitations_currency_check"),
        sa.CheckConstraint("to_email = lower(to_email)", name="transfer_invitations_email_check"),
        sa.CheckConstraint(
            "status IN ('pending', 'completed', 'canceled', 'expired')",
            name="transfer_invitations_status_check",
        ),
        sa.CheckConstraint(
            "(status = 'completed') = (recipient_id IS NOT NULL)",
            name="transfer_invitations_completed_check",
        ),
        sa.CheckConstraint(
            "(status = 'pending') = (resolved_at IS NULL)",
            name="transfer_invitations_resolved_check",
        ),
        sa.ForeignKeyConstraint(
            ["hold_id"], [f"{SCHEMA}.holds.id"], name="transfer_invitations_hold_id_fkey"
        ),
        sa.PrimaryKeyConstraint("id", name="transfer_invitations_pkey"),
        sa.UniqueConstraint("hold_id", name="transfer_invitations_hold_key"),
        schema=SCHEMA,
    )
    op.create_index(
        "transfer_invitations_waiting_idx",
        "transfer_invitations",
        ["to_email"],
        schema=SCHEMA,
        postgresql_where=sa.text("status = 'pending'"),
    )
    op.create_index(
        "transfer_invitations_pending_expiry_idx",
        "transfer_invitations",
        ["expires_at"],
        schema=SCHEMA,
        postgresql_where=sa.text("status = 'pending'"),
    )
    # Granted here, so the grants made after every upgrade leave it narrowed: invitations are
    # closed by their status, never deleted.
    op.execute(f"REVOKE ALL ON TABLE {SCHEMA}.transfer_invitations FROM {ROLE}")
    op.execute(f"GRANT SELECT, INSERT, UPDATE ON TABLE {SCHEMA}.transfer_invitations TO {ROLE}")


def downgrade() -> None:
    """Drop transactions.transfer_invitations."""
    op.drop_table("transfer_invitations", schema=SCHEMA)
