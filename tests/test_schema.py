"""The migrated schema: one role per schema, no password, and the models held to the migrations."""

from __future__ import annotations

from pathlib import Path

import asyncpg
import pytest
from sqlalchemy import CheckConstraint, Column, DefaultClause, MetaData, Text, text

import migrations.models
from micropay_testing.database import TestDatabase
from migrations import VERSION_SCHEMA, describe_difference, head_revision, model_differences
from stack.postgres import SERVICE_ROLES, asyncpg_dsn

SCHEMA_FILE = Path(__file__).resolve().parent.parent / "PostgreSQL.sql"
SCHEMAS = {
    "auth": "auth",
    "payment": "payments",
    "transactions": "transactions",
    "notifications": "notifications",
}


async def admin(database: TestDatabase) -> asyncpg.Connection:
    return await asyncpg.connect(**asyncpg_dsn(database.admin_url))


async def test_the_test_database_is_migrated_with_every_schema_and_role(
    database: TestDatabase,
) -> None:
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
        version = await conn.fetchval(f"SELECT version_num FROM {VERSION_SCHEMA}.alembic_version")
    finally:
        await conn.close()
    assert schemas == set(SCHEMAS.values())
    assert roles == set(SERVICE_ROLES.values())
    assert version == head_revision()


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
        # The inbox is append-only, so the row goes with the rolled-back transaction.
        written = conn.transaction()
        await written.start()
        await conn.execute(
            f"INSERT INTO {own}.inbox (event_id, event_type, producer) "
            "VALUES (gen_random_uuid(), 'test.event', 'test')"
        )
        assert await conn.fetchval(f"SELECT count(*) FROM {own}.inbox") >= 1
        await written.rollback()
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
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.fetchval(f"SELECT version_num FROM {VERSION_SCHEMA}.alembic_version")
    finally:
        await conn.close()


async def test_models_and_migrations_agree(database: TestDatabase) -> None:
    # The services' models and the shared tables (in each schema) against the migrated database,
    # as `alembic check` compares them.
    differences = [describe_difference(d) for d in await model_differences(database.admin_url)]
    assert not differences, (
        "the models and the migrations differ (add a revision: alembic revision --autogenerate "
        "-m '...', or fix the models):\n  " + "\n  ".join(differences)
    )


async def test_a_model_that_differs_from_the_migrations_is_named(
    database: TestDatabase, monkeypatch: pytest.MonkeyPatch
) -> None:
    models = migrations.models.target_metadata

    def drifted() -> MetaData:
        metadata = models()
        payments = metadata.tables["payments.payments"]
        payments.append_column(Column("payout_id", Text()))
        payments.c.description.nullable = False
        refunds = metadata.tables["payments.refunds"]
        refunds.indexes.discard(next(i for i in refunds.indexes if i.name == "refunds_pending_idx"))
        metadata.tables["auth.outbox"].c.attempts.server_default = DefaultClause(text("1"))
        holds = metadata.tables["transactions.holds"]
        status = next(c for c in holds.constraints if c.name == "holds_status_check")
        holds.constraints.discard(status)
        holds.append_constraint(
            CheckConstraint("status IN ('active', 'captured')", name="holds_status_check")
        )
        return metadata

    monkeypatch.setattr(migrations.models, "target_metadata", drifted)

    found = [describe_difference(d) for d in await model_differences(database.admin_url)]

    assert sorted(found) == [
        "auth.outbox.attempts: default is 0 in the migrations but 1 in the models",
        "column payments.payments.payout_id: in the models, not in the migrations",
        "constraint holds_status_check on transactions.holds (CHECK ((status = ANY "
        "(ARRAY['active'::text, 'captured'::text, 'voided'::text, 'expired'::text])))): "
        "in the migrations, not in the models",
        "constraint holds_status_check on transactions.holds "
        "(CHECK status IN ('active', 'captured')): in the models, not in the migrations",
        "index refunds_pending_idx on payments.refunds: in the migrations, not in the models",
        "payments.payments.description: nullable is True in the migrations but False in the models",
    ]
