"""A notification remembers the trace of the event that caused it.

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-02

The delivery worker sends a notification long after the event's request ended; with the event's
W3C `traceparent` on the row, the send (SES, SNS, the webhook's POST) joins the trace of the
user action that caused it. Null when the consumer did not trace, or for rows from before.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0019"
down_revision: str | Sequence[str] | None = "0018"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

NOTIFICATIONS = "notifications"


def upgrade() -> None:
    """Add `notifications.notifications.traceparent`."""
    op.add_column(
        "notifications",
        sa.Column("traceparent", sa.Text(), nullable=True),
        schema=NOTIFICATIONS,
    )


def downgrade() -> None:
    """Drop it."""
    op.drop_column("notifications", "traceparent", schema=NOTIFICATIONS)
