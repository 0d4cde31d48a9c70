"""Webhook redeliveries: when each manual redelivery was asked for, to rate-limit them.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02

`POST /notifications/webhooks/{id}/deliveries/{delivery_id}/redeliver` is limited per endpoint
(WEBHOOK_REDELIVERIES_PER_MINUTE); the limit is kept in the database so every replica counts
the same requests. The notifications role records a request and deletes those older than the
window; it never changes one (docs/migrations.md, "Who may do what").
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCHEMA = "notifications"
ROLE = "notifications_service"


def upgrade() -> None:
    """Create notifications.webhook_redeliveries; its role may select, insert and delete."""
    op.create_table(
        "webhook_redeliveries",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=True), nullable=False),
        sa.Column("endpoint_id", postgresql.UUID(), nullable=False),
        sa.Column(
            "requested_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["endpoint_id"],
            [f"{SCHEMA}.webhook_endpoints.id"],
            name="webhook_redeliveries_endpoint_id_fkey",
        ),
        sa.PrimaryKeyConstraint("id", name="webhook_redeliveries_pkey"),
        schema=SCHEMA,
    )
    op.create_index(
        "webhook_redeliveries_endpoint_idx",
        "webhook_redeliveries",
        ["endpoint_id", "requested_at"],
        schema=SCHEMA,
    )
    # Granted here, so the grants made after every upgrade leave it narrowed.
    op.execute(f"REVOKE ALL ON TABLE {SCHEMA}.webhook_redeliveries FROM {ROLE}")
    op.execute(f"GRANT SELECT, INSERT, DELETE ON TABLE {SCHEMA}.webhook_redeliveries TO {ROLE}")


def downgrade() -> None:
    """Drop notifications.webhook_redeliveries."""
    op.drop_index(
        "webhook_redeliveries_endpoint_idx", table_name="webhook_redeliveries", schema=SCHEMA
    )
    op.drop_table("webhook_redeliveries", schema=SCHEMA)
