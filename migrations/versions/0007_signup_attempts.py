"""Sign-up attempts: each sign-up, confirmation attempt and code resend, to limit them.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02

`POST /auth/register`, `/auth/confirm` and `/auth/resend-confirmation` are limited per client
address over a sliding window (and confirmation attempts and resends per email too), in the
auth service itself, so the limit holds where no nginx gateway stands in front of it (AWS, the
service's own port). The count is kept in the database so every replica counts the same
requests. The auth role records an attempt and deletes those older than the window; it never
changes one (docs/migrations.md, "Who may do what").
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | Sequence[str] | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCHEMA = "auth"
ROLE = "auth_service"


def upgrade() -> None:
    """Create auth.signup_attempts; its role may select, insert and delete."""
    op.create_table(
        "signup_attempts",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=True), nullable=False),
        sa.Column("action", sa.Text(), nullable=False),
        sa.Column("client_ip", sa.Text(), nullable=False),
        sa.Column("email", sa.Text(), nullable=False),
        sa.Column(
            "attempted_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "action IN ('register', 'confirm', 'resend')", name="signup_attempts_action_check"
        ),
        sa.PrimaryKeyConstraint("id", name="signup_attempts_pkey"),
        schema=SCHEMA,
    )
    op.create_index(
        "signup_attempts_client_ip_idx",
        "signup_attempts",
        ["action", "client_ip", "attempted_at"],
        schema=SCHEMA,
    )
    op.create_index(
        "signup_attempts_email_idx",
        "signup_attempts",
        ["action", "email", "attempted_at"],
        schema=SCHEMA,
    )
    op.create_index(
        "signup_attempts_attempted_at_idx", "signup_attempts", ["attempted_at"], schema=SCHEMA
    )
    # Granted here, so the grants made after every upgrade leave it narrowed.
    op.execute(f"REVOKE ALL ON TABLE {SCHEMA}.signup_attempts FROM {ROLE}")
    op.execute(f"GRANT SELECT, INSERT, DELETE ON TABLE {SCHEMA}.signup_attempts TO {ROLE}")


def downgrade() -> None:
    """Drop auth.signup_attempts."""
    for index in (
        "signup_attempts_attempted_at_idx",
        "signup_attempts_email_idx",
        "signup_attempts_client_ip_idx",
    ):
        op.drop_index(index, table_name="signup_attempts", schema=SCHEMA)
    op.drop_table("signup_attempts", schema=SCHEMA)
