"""Revocations everywhere: every service role may read the deny-list's keys and expiries.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03

Every replica of every service keeps an in-memory set of revoked sign-ins, read from
`auth.revoked_tokens` (micropay_common/revocation.py): at start, then the rows revoked since
its last read, every half second and whenever the auth service's NOTIFY wakes it. The other
services' roles may therefore use the `auth` schema and SELECT exactly the three columns that
read names, `origin_jti`, `expires_at` and `revoked_at`: not `user_id`, no other auth table,
and no write (docs/migrations.md, "Who may do what"). The index serves the "revoked since" read.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

READERS = ("payment_service", "transactions_service", "notifications_service")
"""The roles besides auth's own that read the deny-list."""
COLUMNS = "origin_jti, expires_at, revoked_at"


def upgrade() -> None:
    """Index revoked_at; let the other roles read the deny-list's key, expiry and time."""
    op.create_index("revoked_tokens_revoked_idx", "revoked_tokens", ["revoked_at"], schema="auth")
    for role in READERS:
        op.execute(f"GRANT USAGE ON SCHEMA auth TO {role}")
        op.execute(f"GRANT SELECT ({COLUMNS}) ON TABLE auth.revoked_tokens TO {role}")


def downgrade() -> None:
    """Take the reads back and drop the index."""
    for role in READERS:
        op.execute(f"REVOKE SELECT ({COLUMNS}) ON TABLE auth.revoked_tokens FROM {role}")  # noqa: S608
        op.execute(f"REVOKE USAGE ON SCHEMA auth FROM {role}")
    op.drop_index("revoked_tokens_revoked_idx", table_name="revoked_tokens", schema="auth")
