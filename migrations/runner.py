"""Running the history: the lock, the version table, the first release, roles and grants.

`env.py` calls `run_online` / `run_offline`; `upgrade_database`, `schema_sql` and
`model_differences` are what `make migrate`, the launcher, the deployments and the tests use.
"""

from __future__ import annotations

import asyncio
import io
import logging
import weakref
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from alembic import command, context
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.operations.ops import MigrationScript
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, NullPool, make_url, text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, create_async_engine

from micropay_common.db import async_database_url
from migrations.access import grant_statements, role_statements
from migrations.checks import check_definition

log = logging.getLogger("migrations")

PACKAGE_DIR = Path(__file__).resolve().parent
VERSION_SCHEMA = "migrations"
"""Alembic's version table lives in a schema of its own that no service role may use."""
VERSION_TABLE = "alembic_version"
BASELINE = "0001"
"""The revision equal to the first release's PostgreSQL.sql."""
LOCK_KEY = int.from_bytes(b"MicroPay", "big")
"""The transaction-level advisory lock every migrator takes before it reads the version table."""
CONNECT_TIMEOUT_SECONDS = 10

# The tables the first release's PostgreSQL.sql made. A database that has them all and no
# version table is that release's, and is stamped at the baseline before it is upgraded.
_FIRST_RELEASE_OWN_TABLES = {
    "auth": ("users", "sessions", "revoked_tokens", "login_failures"),
    "payments": ("payments", "refunds", "stripe_events"),
    "transactions": ("accounts", "users", "ledger_transactions", "entries", "holds"),
    "notifications": ("users", "webhook_endpoints", "notifications", "devices", "webhook_attempts"),
}
FIRST_RELEASE_TABLES = tuple(
    f"{schema}.{table}"
    for schema, own in _FIRST_RELEASE_OWN_TABLES.items()
    for table in ("outbox", "inbox", "idempotency_keys", *own)
)

SQL_HEADER = """\
-- MicroPay database schema. GENERATED from the Alembic migrations in migrations/ — do not edit;
-- change the schema with a new revision (docs/migrations.md) and regenerate this file with
--
--     make schema-sql        (python -m migrations sql > PostgreSQL.sql)
--
-- It is what `make migrate` does to an empty database, as one transaction: schemas, the service
-- roles (no passwords), tables, indexes, constraints, grants and Alembic's version table
-- (migrations.alembic_version), so `make migrate` continues from it later. Run it as a
-- superuser or the database owner, connected to an EMPTY MicroPay database:
--
--     psql "$ADMIN_DATABASE_URL" -v ON_ERROR_STOP=1 -f PostgreSQL.sql
--
-- A database that has the schema already is upgraded with `make migrate` instead. Role
-- passwords are never written here: set them from your secret store, e.g.
--     ALTER ROLE payment_service PASSWORD '...';

"""


class MigrationError(RuntimeError):
    """The database cannot be migrated as it is (the message says why and what to do)."""


class DatabaseUnreachable(MigrationError):
    """No connection to the database could be made."""


def alembic_config(**attributes: Any) -> Config:
    """Alembic's configuration for this package, without reading alembic.ini."""
    config = Config(output_buffer=attributes.pop("output_buffer", None))
    config.set_main_option("script_location", str(PACKAGE_DIR))
    config.set_main_option("path_separator", "os")
    config.attributes.update(attributes)
    return config


# --- statements around the revisions -----------------------------------------------------------


def before_revisions(*, from_empty: bool) -> list[str]:
    """The lock, the version table's schema and the roles; `from_empty` refuses a built schema."""
    statements = [f"DO $$ BEGIN PERFORM pg_advisory_xact_lock({LOCK_KEY}); END $$"]
    if from_empty:
        statements.append(
            f"""DO $$
BEGIN
    IF to_regclass('{VERSION_SCHEMA}.{VERSION_TABLE}') IS NOT NULL
       OR to_regclass('auth.users') IS NOT NULL THEN
        RAISE EXCEPTION 'this database has the MicroPay schema already: upgrade it with '
            '`make migrate` (python -m migrations upgrade) instead';
    END IF;
END
$$"""
        )
    statements.append(f"CREATE SCHEMA IF NOT EXISTS {VERSION_SCHEMA}")
    return statements + role_statements()


def after_revisions() -> list[str]:
    """Grants, re-applied after every upgrade so that new tables are covered."""
    return grant_statements()


def stamp_first_release(connection: Connection, migration_context: MigrationContext) -> None:
    """Stamp a database made by the first release's PostgreSQL.sql at the baseline."""
    if migration_context.get_current_heads():
        return
    present = set(
        connection.execute(
            text(
                "SELECT name FROM unnest(CAST(:names AS text[])) AS name "
                "WHERE to_regclass(name) IS NOT NULL"
            ),
            {"names": list(FIRST_RELEASE_TABLES)},
        ).scalars()
    )
    if not present:
        return
    missing = [name for name in FIRST_RELEASE_TABLES if name not in present]
    if missing:
        raise MigrationError(
            "the database has some of the first release's tables but not "
            f"{', '.join(missing)}, and no version table: it was not made by PostgreSQL.sql, "
            "so it is not upgraded; repair it by hand or start from an empty database"
        )
    assert migration_context.script is not None
    migration_context.stamp(migration_context.script, BASELINE)
    log.info("first release's schema found: stamped at the baseline %s", BASELINE)


def revision_directives(config: Config) -> Callable[[MigrationContext, Any, list[Any]], None]:
    """Write no revision when autogenerate finds no difference between models and migrations."""

    def process(migration_context: MigrationContext, revision: Any, directives: list[Any]) -> None:
        script = directives[0]
        assert isinstance(script, MigrationScript)
        options = config.cmd_opts
        if getattr(options, "autogenerate", False) and all(
            ops.is_empty() for ops in script.upgrade_ops_list
        ):
            directives[:] = []
            log.info("the models and the migrations agree: no revision written")

    return process


# --- env.py ----------------------------------------------------------------------------------


def _common_options() -> dict[str, Any]:
    return {
        "version_table": VERSION_TABLE,
        "version_table_schema": VERSION_SCHEMA,
        "transaction_per_migration": False,
        "process_revision_directives": revision_directives(context.config),
    }


def run_offline() -> None:
    """Write the SQL of the requested upgrade (from an empty database: PostgreSQL.sql)."""
    context.configure(
        dialect_name="postgresql",
        literal_binds=True,
        # Named parameters keep the % of format() in the DO blocks as they are.
        dialect_opts={"paramstyle": "named"},
        **_common_options(),
    )
    start = context.get_starting_revision_argument()
    with context.begin_transaction():
        for statement in before_revisions(from_empty=start in (None, "base")):
            context.execute(statement)
        context.run_migrations()
        for statement in after_revisions():
            context.execute(statement)


def _changes_database() -> bool:
    """upgrade, downgrade and stamp (which name a destination revision) change the database."""
    try:
        context.get_revision_argument()
    except KeyError:  # current, check, revision --autogenerate: they only read it
        return False
    return True


def run_online(connection: Connection) -> None:
    """Run the command on `connection`, under the lock when it changes the database."""
    changes = _changes_database()
    options = _common_options()
    if not changes:
        from migrations.models import autogenerate_options, target_metadata

        options.update(autogenerate_options(), target_metadata=target_metadata())
    context.configure(connection=connection, **options)
    with context.begin_transaction():
        if changes:
            for statement in before_revisions(from_empty=False):
                context.execute(statement)
            stamp_first_release(connection, context.get_context())
        context.run_migrations()
        if changes:
            for statement in after_revisions():
                context.execute(statement)


# --- what the rest of the code calls ----------------------------------------------------------


# Alembic's `context` and `op` are process-wide, so one process runs one command at a time;
# the advisory lock is what serialises migrators in different processes.
_turns: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = (
    weakref.WeakKeyDictionary()
)


def _one_at_a_time() -> asyncio.Lock:
    return _turns.setdefault(asyncio.get_running_loop(), asyncio.Lock())


@asynccontextmanager
async def connect(admin_url: str) -> AsyncIterator[AsyncConnection]:
    """A connection to the database at `admin_url`, or DatabaseUnreachable saying why not."""
    try:
        url = async_database_url(admin_url)
        shown = make_url(admin_url).render_as_string(hide_password=True)
    except Exception as exc:
        raise DatabaseUnreachable(f"not a PostgreSQL URL ({exc})") from None
    engine = create_async_engine(
        url, poolclass=NullPool, connect_args={"timeout": CONNECT_TIMEOUT_SECONDS}
    )
    try:
        try:
            connection = await engine.connect()
        except (OSError, TimeoutError, SQLAlchemyError) as exc:
            reason = getattr(exc, "orig", None) or exc
            first_line = (str(reason).strip().splitlines() or [""])[0]
            raise DatabaseUnreachable(
                f"cannot reach the database at {shown}: {type(reason).__name__}: {first_line}"
            ) from None
        try:
            yield connection
        finally:
            await connection.close()
    finally:
        await engine.dispose()


def _current_revision(connection: Connection) -> str | None:
    migration_context = MigrationContext.configure(
        connection,
        opts={"version_table": VERSION_TABLE, "version_table_schema": VERSION_SCHEMA},
    )
    return migration_context.get_current_revision()


def _upgrade(connection: Connection) -> str:
    command.upgrade(alembic_config(connection=connection), "head")
    revision = _current_revision(connection)
    connection.rollback()
    assert revision is not None
    return revision


async def upgrade_database(admin_url: str) -> str:
    """Upgrade the database at `admin_url` (an admin URL) to the latest revision; returns it."""
    async with _one_at_a_time(), connect(admin_url) as connection:
        return await connection.run_sync(_upgrade)


def head_revision() -> str:
    """The latest revision of the history."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None
    return head


def schema_sql() -> str:
    """PostgreSQL.sql: the SQL of an upgrade from an empty database to the latest revision."""
    buffer = io.StringIO()
    command.upgrade(alembic_config(output_buffer=buffer), "head", sql=True)
    # SQLAlchemy's DDL ends column lines with a space; the file keeps no trailing whitespace.
    lines = (line.rstrip() for line in buffer.getvalue().splitlines())
    return SQL_HEADER + "\n".join(lines).strip() + "\n"


def _differences(connection: Connection) -> list[Any]:
    from migrations.models import autogenerate_options, target_metadata

    current, head = _current_revision(connection), head_revision()
    if current != head:
        raise MigrationError(
            f"the database is at revision {current or 'none'}, not at the latest ({head}): "
            "run `make migrate` first"
        )
    migration_context = MigrationContext.configure(
        connection,
        opts={
            "version_table": VERSION_TABLE,
            "version_table_schema": VERSION_SCHEMA,
            **autogenerate_options(),
        },
    )
    differences: list[Any] = compare_metadata(migration_context, target_metadata())
    connection.rollback()
    return differences


def _name(item: Any) -> str:
    table = getattr(item, "table", None)
    where = f" on {table.schema}.{table.name}" if table is not None else ""
    return f"{item.name or '(unnamed)'}{where}"


def _shown(value: Any) -> str:
    value = getattr(value, "arg", value)  # a server default's clause
    return str(getattr(value, "text", value))


def describe_difference(difference: Any) -> str:
    """One line for one of compare_metadata's differences, in words."""
    if isinstance(difference, list):  # changes to one column's type, nullability, default
        return "; ".join(describe_difference(change) for change in difference)
    kind, *rest = difference
    action, _, what = kind.partition("_")
    if kind.startswith("modify_"):
        schema, table, column, _existing, in_database, in_models = rest
        return (
            f"{schema}.{table}.{column}: {what} is {_shown(in_database)} in the migrations "
            f"but {_shown(in_models)} in the models"
        )
    where = {
        "add": "in the models, not in the migrations",
        "remove": "in the migrations, not in the models",
    }.get(action, action)
    if what == "column":
        schema, table, column = rest
        return f"column {schema}.{table}.{column.name}: {where}"
    if what == "table":
        return f"table {rest[0].schema}.{rest[0].name}: {where}"
    if what in ("index", "constraint", "fk"):
        label = {"index": "index", "constraint": "constraint", "fk": "foreign key"}[what]
        condition = check_definition(rest[0])
        shown = f" (CHECK {condition})" if condition is not None else ""
        return f"{label} {_name(rest[0])}{shown}: {where}"
    return repr(difference)


async def model_differences(admin_url: str) -> list[Any]:
    """What autogenerate finds between the models and a database at the latest revision."""
    async with _one_at_a_time(), connect(admin_url) as connection:
        return await connection.run_sync(_differences)
