"""Least privilege: an append-only ledger, and each role only the statements its code runs.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02

Until now every service role could SELECT, INSERT, UPDATE and DELETE every table of its schema,
so a compromised or buggy service could rewrite or erase ledger lines. Each role now keeps on
each table only what its code uses (docs/migrations.md, "Who may do what", says why for each):
the ledger (`transactions.ledger_transactions`, `transactions.entries`), the inboxes, the webhook
attempts are append-only; nothing is deleted but what a purge or the API removes. No role keeps
TRUNCATE, REFERENCES or TRIGGER. Every table of every role is granted here, so the grants made
after every upgrade (only where a role has no privilege yet) leave these as they are.

Roles and tables are spelled out: a revision never reads the registry or the models.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ALL = "SELECT, INSERT, UPDATE, DELETE"
"""What every role had on every table of its schema before this revision."""
APPEND_ONLY = "SELECT, INSERT"
NO_DELETE = "SELECT, INSERT, UPDATE"

# Every schema has these three; the outbox relay updates an event's status and attempts, the
# inbox only records event ids, and idempotency keys are leased (UPDATE) and purged (DELETE).
_MESSAGING = {"outbox": NO_DELETE, "inbox": APPEND_ONLY, "idempotency_keys": ALL}

PRIVILEGES: dict[str, dict[str, dict[str, str]]] = {
    "auth_service": {
        "auth": {
            **_MESSAGING,
            "users": NO_DELETE,
            "sessions": ALL,  # refresh rotation and logout update, the purge deletes
            "revoked_tokens": ALL,  # ON CONFLICT DO UPDATE, the purge deletes
            "login_failures": "SELECT, INSERT, DELETE",  # a sign-in clears, the purge deletes
        }
    },
    "payment_service": {
        "payments": {
            **_MESSAGING,
            "payments": NO_DELETE,
            "refunds": NO_DELETE,
            "stripe_events": NO_DELETE,  # the outcome is written once handled
        }
    },
    "transactions_service": {
        "transactions": {
            **_MESSAGING,
            "accounts": NO_DELETE,
            "users": ALL,  # an email taken by a new user is removed from the old one
            "ledger_transactions": APPEND_ONLY,
            "entries": APPEND_ONLY,
            "holds": NO_DELETE,
        }
    },
    "notifications_service": {
        "notifications": {
            **_MESSAGING,
            "users": NO_DELETE,
            "webhook_endpoints": NO_DELETE,  # removing one marks it deleted
            "notifications": NO_DELETE,
            "devices": ALL,  # a user removes a device
            "webhook_attempts": APPEND_ONLY,
        }
    },
}


def upgrade() -> None:
    """Replace each role's privileges on each table of its schema with what its code uses."""
    for role, schemas in PRIVILEGES.items():
        for schema, tables in schemas.items():
            for table, privileges in tables.items():
                op.execute(f"REVOKE ALL ON TABLE {schema}.{table} FROM {role}")
                op.execute(f"GRANT {privileges} ON TABLE {schema}.{table} TO {role}")


def downgrade() -> None:
    """Give every role back all four privileges on every table of its schema."""
    for role, schemas in PRIVILEGES.items():
        for schema, tables in schemas.items():
            for table in tables:
                op.execute(f"GRANT {ALL} ON TABLE {schema}.{table} TO {role}")
