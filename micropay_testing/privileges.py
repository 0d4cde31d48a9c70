"""What each service role may do to each table, as the tests expect it (docs/migrations.md)."""

from __future__ import annotations

import asyncpg

ALL = frozenset({"SELECT", "INSERT", "UPDATE", "DELETE"})
APPEND_ONLY = frozenset({"SELECT", "INSERT"})
NO_DELETE = frozenset({"SELECT", "INSERT", "UPDATE"})
TABLE_PRIVILEGES = ("SELECT", "INSERT", "UPDATE", "DELETE", "TRUNCATE", "REFERENCES", "TRIGGER")

_MESSAGING = {"outbox": NO_DELETE, "inbox": APPEND_ONLY, "idempotency_keys": ALL}

EXPECTED: dict[tuple[str, str], dict[str, frozenset[str]]] = {
    ("auth_service", "auth"): {
        **_MESSAGING,
        "users": NO_DELETE,
        "sessions": ALL,
        "revoked_tokens": ALL,
        "login_failures": frozenset({"SELECT", "INSERT", "DELETE"}),
        "signup_attempts": frozenset({"SELECT", "INSERT", "DELETE"}),
    },
    ("payment_service", "payments"): {
        **_MESSAGING,
        "payments": NO_DELETE,
        "refunds": NO_DELETE,
        "stripe_events": NO_DELETE,
        "paypal_events": NO_DELETE,
        "disputes": NO_DELETE,
    },
    ("transactions_service", "transactions"): {
        **_MESSAGING,
        "accounts": NO_DELETE,
        "users": ALL,
        "ledger_transactions": APPEND_ONLY,
        "entries": APPEND_ONLY,
        "holds": NO_DELETE,
        "top_up_settlements": APPEND_ONLY,
        "money_requests": NO_DELETE,
        "transfer_invitations": NO_DELETE,
    },
    ("notifications_service", "notifications"): {
        **_MESSAGING,
        "users": NO_DELETE,
        "webhook_endpoints": NO_DELETE,
        "notifications": NO_DELETE,
        "devices": ALL,
        "webhook_attempts": APPEND_ONLY,
        "webhook_redeliveries": frozenset({"SELECT", "INSERT", "DELETE"}),
        "notification_preferences": NO_DELETE,
    },
}
"""Per (role, its schema): each table and the privileges the role holds on it."""

ADDED_AFTER_BASELINE = {
    "notifications.webhook_redeliveries",
    "notifications.notification_preferences",
    "auth.signup_attempts",
    "payments.disputes",
    "payments.paypal_events",
    "transactions.top_up_settlements",
    "transactions.money_requests",
    "transactions.transfer_invitations",
}
"""Tables a later revision than the baseline creates (absent after a downgrade to it)."""

EXPECTED_BY_ROLE = {role: (schema, tables) for (role, schema), tables in EXPECTED.items()}

DENY_LIST = "auth.revoked_tokens"
DENY_LIST_READERS = ("payment_service", "transactions_service", "notifications_service")
"""The roles that read the deny-list besides auth's own (revision 0006)."""
DENY_LIST_COLUMNS = frozenset({"origin_jti", "expires_at", "revoked_at"})
"""The only columns they may read: what every replica's deny-set is filled from."""


async def held_privileges(conn: asyncpg.Connection, role: str, schema: str) -> dict[str, set[str]]:
    """The table privileges `role` holds on each table of `schema` (any grantor, PUBLIC too)."""
    rows = await conn.fetch(
        "SELECT c.relname, ARRAY(SELECT p FROM unnest($3::text[]) AS p"
        "                        WHERE has_table_privilege($1, c.oid, p)) AS held"
        " FROM pg_catalog.pg_class c"
        " WHERE c.relnamespace = $2::regnamespace AND c.relkind IN ('r', 'p', 'v')",
        role,
        schema,
        list(TABLE_PRIVILEGES),
    )
    return {row["relname"]: set(row["held"]) for row in rows}


async def readable_columns(conn: asyncpg.Connection, role: str, table: str) -> set[str]:
    """The columns of `table` that `role` may SELECT (a table-wide grant counts for all)."""
    rows = await conn.fetch(
        "SELECT attname FROM pg_catalog.pg_attribute WHERE attrelid = $2::regclass"
        " AND attnum > 0 AND NOT attisdropped"
        " AND has_column_privilege($1, attrelid, attnum, 'SELECT')",
        role,
        table,
    )
    return {row["attname"] for row in rows}
