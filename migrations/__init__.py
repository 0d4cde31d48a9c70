"""MicroPay's schema migrations (Alembic): one history for the whole database.

    revision = await upgrade_database(admin_url)   # what `make migrate` does
    python -m migrations upgrade | sql | check     # the command line (DATABASE_URL: admin URL)

See docs/migrations.md.
"""

from __future__ import annotations

from migrations.runner import (
    BASELINE,
    VERSION_SCHEMA,
    VERSION_TABLE,
    DatabaseUnreachable,
    MigrationError,
    describe_difference,
    head_revision,
    model_differences,
    schema_sql,
    upgrade_database,
)

__all__ = [
    "BASELINE",
    "VERSION_SCHEMA",
    "VERSION_TABLE",
    "DatabaseUnreachable",
    "MigrationError",
    "describe_difference",
    "head_revision",
    "model_differences",
    "schema_sql",
    "upgrade_database",
]
