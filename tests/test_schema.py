"""PostgreSQL.sql: re-runnable, one role per schema, and in agreement with the ORM models."""

from __future__ import annotations

from collections.abc import Iterator

import asyncpg
import pytest
from sqlalchemy import MetaData, Table
from sqlalchemy.dialects import postgresql

from micropay_common.tables import shared_metadata
from micropay_testing.database import TestDatabase
from stack.postgres import SCHEMA_FILE, SERVICE_ROLES, apply_schema, asyncpg_dsn

SCHEMAS = {
    "auth": "auth",
    "payment": "payments",
    "transactions": "transactions",
    "notifications": "notifications",
}


def model_tables() -> Iterator[tuple[str, Table]]:
    """Every table the code defines, with the schema it lives in."""
    for schema in SCHEMAS.values():
        for table in shared_metadata.sorted_tables:
            yield schema, table
    for metadata in service_metadata():
        for table in metadata.sorted_tables:
            assert table.schema, f"{table.name} must name its schema"
            yield table.schema, table


def service_metadata() -> list[MetaData]:
    """Metadata of the services' own models (each service registers its Base here)."""
    found: list[MetaData] = []
    for package in SCHEMAS:
        module_name = f"{package}_microservice.models"
        try:
            module = __import__(module_name, fromlist=["Base"])
        except ModuleNotFoundError as exc:
            if exc.name != module_name:
                raise
            continue
        found.append(module.Base.metadata)
    return found


async def admin(database: TestDatabase) -> asyncpg.Connection:
    return await asyncpg.connect(**asyncpg_dsn(database.admin_url))


async def test_schema_file_runs_twice_cleanly(database: TestDatabase) -> None:
    await apply_schema(database.server, database.name)
    await apply_schema(database.server, database.name)
    conn = await admin(database)
    try:
        schemas = {
            row["nspname"]
            for row in await conn.fetch("SELECT nspname FROM pg_namespace")
            if row["nspname"] in SCHEMAS.values()
        }
        roles = {
            row["rolname"]
            for row in await conn.fetch(
                "SELECT rolname FROM pg_roles WHERE rolname = ANY($1::text[])",
                list(SERVICE_ROLES.values()),
            )
        }
    finally:
        await conn.close()
    assert schemas == set(SCHEMAS.values())
    assert roles == set(SERVICE_ROLES.values())


def test_schema_file_holds_no_password() -> None:
    statements = [
        line for line in SCHEMA_FILE.read_text().splitlines() if not line.lstrip().startswith("--")
    ]
    assert "PASSWORD" not in "\n".join(statements).upper()


@pytest.mark.parametrize("service", list(SCHEMAS))
async def test_each_role_reaches_only_its_own_schema(database: TestDatabase, service: str) -> None:
    conn = await asyncpg.connect(**asyncpg_dsn(database.service_urls[service]))
    try:
        own = SCHEMAS[service]
        await conn.execute(
            f"INSERT INTO {own}.inbox (event_id, event_type, producer) "
            "VALUES (gen_random_uuid(), 'test.event', 'test')"
        )
        assert await conn.fetchval(f"SELECT count(*) FROM {own}.inbox") >= 1
        await conn.execute(f"DELETE FROM {own}.inbox WHERE event_type = 'test.event'")
        for other in set(SCHEMAS.values()) - {own}:
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await conn.fetchval(f"SELECT count(*) FROM {other}.outbox")
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await conn.execute(
                    f"INSERT INTO {other}.inbox (event_id, event_type, producer) "
                    "VALUES (gen_random_uuid(), 'x', 'x')"
                )
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute(f"CREATE TABLE {own}.sneaky (id int)")
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute("CREATE TABLE public.sneaky (id int)")
    finally:
        await conn.close()


async def test_models_and_schema_file_agree(database: TestDatabase) -> None:
    conn = await admin(database)
    try:
        rows = await conn.fetch(
            """
            SELECT table_schema, table_name, column_name, is_nullable, udt_name
            FROM information_schema.columns
            WHERE table_schema = ANY($1::text[])
            """,
            list(SCHEMAS.values()),
        )
        constraint_rows = await conn.fetch(
            """
            SELECT n.nspname AS schema, c.relname AS table_name, con.conname
            FROM pg_constraint con
            JOIN pg_class c ON c.oid = con.conrelid
            JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE n.nspname = ANY($1::text[]) AND con.contype IN ('u', 'p')
            """,
            list(SCHEMAS.values()),
        )
    finally:
        await conn.close()
    database_columns: dict[tuple[str, str], dict[str, tuple[bool, str]]] = {}
    for row in rows:
        columns = database_columns.setdefault((row["table_schema"], row["table_name"]), {})
        columns[row["column_name"]] = (row["is_nullable"] == "YES", row["udt_name"])

    model_keys = set()
    dialect = postgresql.dialect()  # type: ignore[no-untyped-call]
    for schema, table in model_tables():
        key = (schema, table.name)
        model_keys.add(key)
        assert key in database_columns, f"{schema}.{table.name} is missing from PostgreSQL.sql"
        in_database = database_columns[key]
        assert set(in_database) == {c.name for c in table.columns}, f"columns of {key} differ"
        for column in table.columns:
            nullable, udt = in_database[column.name]
            assert nullable == column.nullable, f"nullability of {key}.{column.name} differs"
            compiled = column.type.compile(dialect=dialect).lower()
            assert _same_type(compiled, udt), f"{key}.{column.name}: model {compiled}, sql {udt}"
        named = {
            constraint.name
            for constraint in table.constraints
            if constraint.name and constraint.__class__.__name__ == "UniqueConstraint"
        }
        in_db = {r["conname"] for r in constraint_rows if (r["schema"], r["table_name"]) == key}
        assert named <= in_db, f"unique constraints of {key}: model {named}, sql {in_db}"
    assert set(database_columns) == model_keys, "tables in PostgreSQL.sql without a model"


_TYPE_ALIASES = {
    "bigint": {"int8"},
    "integer": {"int4"},
    "smallint": {"int2"},
    "text": {"text"},
    "uuid": {"uuid"},
    "jsonb": {"jsonb"},
    "boolean": {"bool"},
    "timestamp with time zone": {"timestamptz"},
    "date": {"date"},
}


def _same_type(compiled: str, udt: str) -> bool:
    base = compiled.split("(")[0].strip()
    if base.startswith("varchar"):
        return udt == "varchar"
    if base.startswith("char"):
        return udt == "bpchar"
    return udt in _TYPE_ALIASES.get(base, {base})
