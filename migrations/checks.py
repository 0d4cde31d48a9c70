"""Autogenerate and `check` compare CHECK constraints too, as PostgreSQL reads them.

Alembic compares columns, indexes, unique and foreign keys, but not what a CHECK says, and the
statuses and kinds the services accept live in CHECKs. Each model CHECK is added to a scratch
copy of its table (in a savepoint that is rolled back) and compared, as `pg_get_constraintdef`
renders it, with the database's: by name, or by definition for an unnamed one.
"""

from __future__ import annotations

from typing import Any

from alembic.autogenerate.api import AutogenContext
from alembic.operations import ops
from alembic.runtime.plugins import Plugin
from alembic.util import PriorityDispatchResult
from sqlalchemy import CheckConstraint, Connection, Table, text

PLUGIN = "micropay.check_constraints"
_SCRATCH = "micropay_check_scratch"


def _database_checks(connection: Connection, schema: str, table: str) -> dict[str, str]:
    rows = connection.execute(
        text(
            "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint "
            "WHERE conrelid = CAST(:table AS regclass) AND contype = 'c'"
        ),
        {"table": f'"{schema}"."{table}"'},
    )
    return {name: definition for name, definition in rows}


def _model_checks(
    autogen_context: AutogenContext, schema: str, table: str, checks: list[CheckConstraint]
) -> list[tuple[CheckConstraint, str]]:
    """Each model CHECK with PostgreSQL's rendering of it (on a scratch copy of the table)."""
    connection = autogen_context.connection
    assert connection is not None
    rendered = []
    savepoint = connection.begin_nested()
    try:
        connection.execute(text(f'CREATE TEMP TABLE {_SCRATCH} (LIKE "{schema}"."{table}")'))
        for number, check in enumerate(checks):
            condition = check.sqltext.compile(
                dialect=autogen_context.dialect, compile_kwargs={"literal_binds": True}
            )
            connection.execute(
                text(
                    f"ALTER TABLE {_SCRATCH} ADD CONSTRAINT c{number} CHECK ({condition}) NOT VALID"
                )
            )
        definitions = _database_checks(connection, "pg_temp", _SCRATCH)
        for number, check in enumerate(checks):
            rendered.append((check, definitions[f"c{number}"].removesuffix(" NOT VALID")))
    finally:
        savepoint.rollback()
    return rendered


def compare_check_constraints(
    autogen_context: AutogenContext,
    modify_table_ops: ops.ModifyTableOps,
    schema: str | None,
    table_name: str,
    conn_table: Table | None,
    metadata_table: Table | None,
) -> PriorityDispatchResult:
    """Add, drop or replace the CHECKs whose definition differs from the models'."""
    if conn_table is None or metadata_table is None or schema is None:
        return PriorityDispatchResult.CONTINUE
    connection = autogen_context.connection
    assert connection is not None
    in_database = _database_checks(connection, schema, table_name)
    checks = [c for c in metadata_table.constraints if isinstance(c, CheckConstraint)]
    in_models = _model_checks(autogen_context, schema, table_name, checks)

    def drop(name: str) -> None:
        definition = in_database[name].removeprefix("CHECK ")
        existing = CheckConstraint(text(definition), name=name, table=conn_table)
        modify_table_ops.ops.append(ops.DropConstraintOp.from_constraint(existing))

    unmatched = dict(in_database)
    unnamed: list[tuple[CheckConstraint, str]] = []
    for check, definition in in_models:
        name = check.name if isinstance(check.name, str) else None
        if name is None:
            unnamed.append((check, definition))
        elif name not in in_database:
            modify_table_ops.ops.append(ops.AddConstraintOp.from_constraint(check))
        else:
            unmatched.pop(name, None)
            if in_database[name] != definition:
                drop(name)
                modify_table_ops.ops.append(ops.AddConstraintOp.from_constraint(check))
    for check, definition in unnamed:
        same = next((n for n, d in unmatched.items() if d == definition), None)
        if same is None:
            modify_table_ops.ops.append(ops.AddConstraintOp.from_constraint(check))
        else:
            unmatched.pop(same)
    for name in sorted(unmatched):
        drop(name)
    return PriorityDispatchResult.CONTINUE


def _setup() -> None:
    plugin = Plugin(PLUGIN)
    plugin.add_autogenerate_comparator(compare_check_constraints, "table", "check_constraints")


def check_definition(constraint: Any) -> str | None:
    """The condition of a CHECK constraint as text, for messages; None for other constraints."""
    if not isinstance(constraint, CheckConstraint):
        return None
    return str(getattr(constraint.sqltext, "text", constraint.sqltext))


_setup()
