"""Dead outbox rows are found by an index: the outbox's gauges count them every few seconds.

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-02

`micropay_outbox_dead` (micropay_common.outbox.OutboxGauges) counts each consumer's dead rows
on every replica every 15 seconds; without an index that is a scan of the whole outbox,
delivered rows included. Dead rows are few (an operator deals with them), so the partial index
is small, as `outbox_pending_idx` is for the pending ones.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0020"
down_revision: str | Sequence[str] | None = "0019"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCHEMAS = ("auth", "payments", "transactions", "notifications")


def upgrade() -> None:
    """Create each schema's `outbox_dead_idx`."""
    for schema in SCHEMAS:
        op.execute(
            f"CREATE INDEX outbox_dead_idx ON {schema}.outbox (consumer) WHERE status = 'dead'"
        )


def downgrade() -> None:
    """Drop them."""
    for schema in SCHEMAS:
        op.execute(f"DROP INDEX {schema}.outbox_dead_idx")
