"""`python -m migrations upgrade | sql | check`: what `make migrate` and `make schema-sql` run.

upgrade  upgrade the database DATABASE_URL names (an admin URL) to the latest revision
sql      print the SQL that builds the schema in an empty database (PostgreSQL.sql)
check    compare the models with a database at the latest revision; non-zero when they differ
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys

from migrations.runner import (
    MigrationError,
    describe_difference,
    head_revision,
    model_differences,
    schema_sql,
    upgrade_database,
)

PROG = "python -m migrations"


def _admin_url() -> str:
    url = os.environ.get("DATABASE_URL")
    if not url:
        raise MigrationError(
            "DATABASE_URL is not set: give the admin URL of the MicroPay database, e.g. "
            "postgresql://postgres:...@127.0.0.1:5432/micropay"
        )
    return url


def upgrade() -> int:
    """Upgrade DATABASE_URL's database to the latest revision."""
    revision = asyncio.run(upgrade_database(_admin_url()))
    print(f"{PROG}: the database is at revision {revision} (the latest)")
    return 0


def sql() -> int:
    """Print PostgreSQL.sql."""
    sys.stdout.write(schema_sql())
    return 0


def check() -> int:
    """Report every difference between the models and the migrations."""
    differences = asyncio.run(model_differences(_admin_url()))
    if not differences:
        print(f"{PROG}: the models and the migrations (revision {head_revision()}) agree")
        return 0
    print(
        f"{PROG}: the models differ from the migrations; add a revision "
        "(alembic revision --autogenerate -m '...') or fix the models:",
        file=sys.stderr,
    )
    for difference in differences:
        print(f"  {describe_difference(difference)}", file=sys.stderr)
    return 1


COMMANDS = {"upgrade": upgrade, "sql": sql, "check": check}


def main(argv: list[str] | None = None) -> int:
    """Run one command; a database that is missing or cannot be migrated is one line."""
    parser = argparse.ArgumentParser(
        prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("command", choices=COMMANDS)
    args = parser.parse_args(argv)
    # What was applied (Alembic's "Running upgrade ...", a first release stamped) is reported.
    logging.basicConfig(format=f"{PROG}: %(message)s", level=logging.WARNING)
    logging.getLogger("migrations").setLevel(logging.INFO)
    alembic_log = logging.getLogger("alembic.runtime.migration")
    alembic_log.setLevel(logging.INFO)
    alembic_log.addFilter(lambda record: record.getMessage().startswith("Running "))
    try:
        return COMMANDS[args.command]()
    except MigrationError as exc:
        print(f"{PROG} {args.command}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
