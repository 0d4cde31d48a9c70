"""Notification preferences: the channels each user turned off per event type, and `skipped`.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-02

`notifications.notification_preferences` holds, per user and event type, whether email, push
and webhooks are on (no row: all on). An event that arrives while a channel is off still
becomes that channel's notification record, with the new status `skipped`, so the user's list
shows what was not sent and why. The notifications role reads, adds and changes preferences;
it never deletes one (docs/migrations.md, "Who may do what").
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014"
down_revision: str | Sequence[str] | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCHEMA = "notifications"
ROLE = "notifications_service"
STATUS_CHECK = "notifications_status_check"


def _replace_status_check(statuses: Sequence[str]) -> None:
    listed = ", ".join(f"'{status}'" for status in statuses)
    op.drop_constraint(STATUS_CHECK, "notifications", schema=SCHEMA, type_="check")
    op.create_check_constraint(
        STATUS_CHECK, "notifications", f"status IN ({listed})", schema=SCHEMA
    )


def upgrade() -> None:
    """Create notifications.notification_preferences and allow the status `skipped`."""
    op.create_table(
        "notification_preferences",
        sa.Column("user_id", sa.Text(), nullable=False),
        sa.Column("event_type", sa.Text(), nullable=False),
        sa.Column("email", sa.Boolean(), server_default=sa.text("true"), nullable=False),
        sa.Column("push", sa.Boolean(), server_default=sa.text("true"), nullable=False),
        sa.Column("webhook", sa.Boolean(), server_default=sa.text("true"), nullable=False),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("user_id", "event_type", name="notification_preferences_pkey"),
        schema=SCHEMA,
    )
    # Granted here, so the grants made after every upgrade leave it narrowed.
    op.execute(f"REVOKE ALL ON TABLE {SCHEMA}.notification_preferences FROM {ROLE}")
    op.execute(f"GRANT SELECT, INSERT, UPDATE ON TABLE {SCHEMA}.notification_preferences TO {ROLE}")
    _replace_status_check(("pending", "sent", "failed", "skipped"))


def downgrade() -> None:
    """Drop the preferences; skipped notifications become failed ones, with the reason."""
    op.execute(
        "UPDATE notifications.notifications SET status = 'failed',"
        " last_error = coalesce(last_error, 'skipped: the channel was off for this event type')"
        " WHERE status = 'skipped'"
    )
    _replace_status_check(("pending", "sent", "failed"))
    op.drop_table("notification_preferences", schema=SCHEMA)
