"""`make migrate`: empty, twice, the first release, side by side; grants; PostgreSQL.sql."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from subprocess import PIPE
from typing import Any

import asyncpg
import pytest
from alembic.script import ScriptDirectory
from sqlalchemy.engine import make_url

from micropay_testing.database import TestDatabase, psql
from micropay_testing.polling import eventually
from micropay_testing.privileges import EXPECTED_BY_ROLE, held_privileges
from micropay_testing.schema import (
    SERVICE_ROLES,
    assert_same_schema,
    schema_differences,
    schema_snapshot,
)
from migrations import (
    BASELINE,
    VERSION_SCHEMA,
    MigrationError,
    head_revision,
    schema_sql,
    upgrade_database,
)
from migrations.models import SERVICE_SCHEMAS
from migrations.runner import LOCK_KEY, alembic_config
from stack.postgres import connect

NewDatabase = Callable[[], Awaitable[str]]
ROOT = Path(__file__).resolve().parents[2]
SCHEMA_FILE = ROOT / "PostgreSQL.sql"
FIRST_RELEASE_SQL = Path(__file__).with_name("first_release.sql")

USER_ID = uuid.UUID("0b7f5a52-7c1e-4a8e-9d6f-2f4c1a9e8b01")
TOP_UP_ID = uuid.UUID("5d1c0e7a-3b2f-4c9d-8e6a-7f0b1c2d3e4f")
PAYMENT_ID = uuid.UUID("9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d")
EVENT_ID = uuid.UUID("1f2e3d4c-5b6a-4978-8a9b-0c1d2e3f4a5b")
# What a first-release database holds: a user, a wallet with money from a card payment (the
# ledger transaction and its two lines), the payment, and the event about it still in the outbox.
FIRST_RELEASE_ROWS = f"""
INSERT INTO auth.users (id, email, confirmed_at) VALUES ('{USER_ID}', 'ann@example.com', now());
INSERT INTO transactions.users (user_id, email) VALUES ('{USER_ID}', 'ann@example.com');
INSERT INTO transactions.accounts (kind, user_id, currency, balance)
    VALUES ('user', '{USER_ID}', 'EUR', 2500);
INSERT INTO transactions.accounts (kind, system_code, currency, balance)
    VALUES ('system', 'card_funding', 'EUR', -2500);
INSERT INTO transactions.ledger_transactions (id, type, reference, description)
    VALUES ('{TOP_UP_ID}', 'top_up', '{PAYMENT_ID}', 'Card top-up');
INSERT INTO transactions.entries (transaction_id, account_id, type, amount, currency, balance_after)
    SELECT '{TOP_UP_ID}', id, 'top_up', CASE kind WHEN 'user' THEN 2500 ELSE -2500 END, 'EUR',
           balance
    FROM transactions.accounts ORDER BY id;
INSERT INTO payments.payments (id, user_id, amount, currency, status, payment_method,
                               idempotency_key, request_hash, stripe_payment_intent_id)
    VALUES ('{PAYMENT_ID}', '{USER_ID}', 2500, 'EUR', 'succeeded', 'pm_card_visa', 'key-1',
            'hash-1', 'pi_1');
INSERT INTO payments.outbox (event_id, event_type, consumer, payload)
    VALUES ('{EVENT_ID}', 'payment.succeeded', 'transactions',
            '{{"payment_id": "{PAYMENT_ID}", "amount": 2500, "currency": "EUR"}}');
"""
ROW_TABLES = (
    "auth.users",
    "transactions.users",
    "transactions.accounts",
    "transactions.ledger_transactions",
    "transactions.entries",
    "payments.payments",
    "payments.outbox",
)


async def snapshot_of(url: str) -> dict[str, Any]:
    """The schema of the database at `url`."""
    conn = await connect(url)
    try:
        return await schema_snapshot(conn)
    finally:
        await conn.close()


async def fresh_schema(new_database: NewDatabase) -> dict[str, Any]:
    """The schema `make migrate` builds in an empty database."""
    url = await new_database()
    await upgrade_database(url)
    return await snapshot_of(url)


async def rows(
    conn: asyncpg.Connection, like: dict[str, list[dict[str, Any]]] | None = None
) -> dict[str, list[dict[str, Any]]]:
    """Every row of the tables FIRST_RELEASE_ROWS fills; only the columns `like`'s rows have,
    when given (a later revision may add a column, with its default)."""
    found = {}
    for table in ROW_TABLES:
        records = [dict(row) for row in await conn.fetch(f"SELECT * FROM {table} ORDER BY 1")]
        if like is not None and like[table]:
            columns = like[table][0].keys()
            records = [{column: record[column] for column in columns} for record in records]
        found[table] = records
    return found


async def run_psql(url: str, script: Path) -> subprocess.CompletedProcess[str]:
    """`psql -v ON_ERROR_STOP=1 -f script` as the admin, as a person would run it."""
    return await asyncio.to_thread(
        subprocess.run,
        [psql(), url, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-f", str(script)],
        capture_output=True,
        text=True,
        timeout=120,
    )


async def test_migrate_builds_the_schema_and_running_it_again_changes_nothing(
    new_database: NewDatabase,
) -> None:
    url = await new_database()
    assert await upgrade_database(url) == head_revision()
    built = await snapshot_of(url)
    assert set(built["schemas"]) >= {*SERVICE_SCHEMAS, VERSION_SCHEMA}
    assert set(built["roles"]) == set(SERVICE_ROLES)
    assert built["version"] == [head_revision()]

    assert await upgrade_database(url) == head_revision()
    assert_same_schema(await snapshot_of(url), built, "a second `make migrate` changed the schema")


async def test_a_first_release_database_keeps_its_rows_and_ends_exactly_as_a_fresh_one(
    new_database: NewDatabase, database: TestDatabase
) -> None:
    url = await new_database()
    conn = await connect(url)
    try:
        await conn.execute(FIRST_RELEASE_SQL.read_text())
        await conn.execute(FIRST_RELEASE_ROWS)
        before = await rows(conn)
    finally:
        await conn.close()
    assert all(before.values())

    assert await upgrade_database(url) == head_revision()

    conn = await connect(url)
    try:
        assert await rows(conn, like=before) == before
        # Identity columns carry on after the rows they already numbered. (Two entries that
        # balance: the ledger refuses, at commit, a transaction that does not.)
        next_entry = await conn.fetchval(
            "INSERT INTO transactions.entries "
            "(transaction_id, account_id, type, amount, currency, balance_after) "
            f"SELECT '{TOP_UP_ID}', id, 'top_up', CASE kind WHEN 'user' THEN 1 ELSE -1 END, "
            "'EUR', balance FROM transactions.accounts ORDER BY id RETURNING id"
        )
        assert next_entry > max(row["id"] for row in before["transactions.entries"])
        # That release let every role change every row; the upgrade (0002) narrows its grants.
        for role, (schema, tables) in EXPECTED_BY_ROLE.items():
            assert await held_privileges(conn, role, schema) == {
                table: set(privileges) for table, privileges in tables.items()
            }
    finally:
        await conn.close()
    # The service still reads its own rows as its own role.
    service_url = make_url(database.service_urls["transactions"]).set(
        database=make_url(url).database
    )
    service = await connect(service_url.render_as_string(hide_password=False))
    try:
        balance = await service.fetchval(
            "SELECT balance FROM transactions.accounts WHERE user_id = $1", str(USER_ID)
        )
    finally:
        await service.close()
    assert balance == 2500

    assert_same_schema(
        await snapshot_of(url),
        await fresh_schema(new_database),
        "the first release's database, migrated, differs from a freshly migrated one",
    )


async def test_a_database_with_only_part_of_the_first_release_is_left_alone(
    new_database: NewDatabase,
) -> None:
    url = await new_database()
    conn = await connect(url)
    try:
        await conn.execute("CREATE SCHEMA auth; CREATE TABLE auth.users (id uuid PRIMARY KEY)")
    finally:
        await conn.close()
    before = await snapshot_of(url)

    with pytest.raises(MigrationError, match=r"but not auth\.outbox, .*no version table"):
        await upgrade_database(url)

    assert_same_schema(await snapshot_of(url), before, "a refused upgrade changed the database")


async def test_migrators_started_together_take_turns(new_database: NewDatabase) -> None:
    url = await new_database()
    env = {**os.environ, "DATABASE_URL": url}
    command = [sys.executable, "-m", "migrations", "upgrade"]

    # As Kubernetes starts them: several processes at once, each its own migrator.
    migrators = [
        await asyncio.create_subprocess_exec(*command, cwd=ROOT, env=env, stdout=PIPE, stderr=PIPE)
        for _ in range(3)
    ]
    outputs = await asyncio.gather(*(migrator.communicate() for migrator in migrators))

    for migrator, (_, stderr) in zip(migrators, outputs, strict=True):
        assert migrator.returncode == 0, stderr.decode()
    assert_same_schema(await snapshot_of(url), await fresh_schema(new_database))


async def test_a_migrator_waits_for_the_one_holding_the_lock(new_database: NewDatabase) -> None:
    url = await new_database()
    holder = await connect(url)
    try:
        await holder.execute("SELECT pg_advisory_lock($1)", LOCK_KEY)
        migrator = asyncio.create_task(upgrade_database(url))
        await eventually(
            lambda: holder.fetchval(
                "SELECT count(*) FROM pg_locks l JOIN pg_database d ON d.oid = l.database "
                "WHERE l.locktype = 'advisory' AND NOT l.granted "
                "AND d.datname = current_database()"
            )
        )
        assert not migrator.done()
        assert await holder.fetchval("SELECT to_regnamespace($1)", VERSION_SCHEMA) is None
        await holder.execute("SELECT pg_advisory_unlock($1)", LOCK_KEY)
        assert await asyncio.wait_for(migrator, 60) == head_revision()
    finally:
        await holder.close()


async def test_every_upgrade_grants_new_tables_and_keeps_narrowed_privileges(
    new_database: NewDatabase,
) -> None:
    url = await new_database()
    await upgrade_database(url)
    conn = await connect(url)
    try:
        # What a later revision might do: a new table, and less for a role on an old one.
        await conn.execute(
            "CREATE TABLE payments.payouts (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY);"
            "REVOKE UPDATE, DELETE ON transactions.entries FROM transactions_service"
        )
        await upgrade_database(url)

        async def may(role: str, privilege: str, table: str) -> bool:
            return bool(
                await conn.fetchval(
                    "SELECT has_table_privilege($1, $2, $3)", role, table, privilege
                )
            )

        for privilege in ("SELECT", "INSERT", "UPDATE", "DELETE"):
            assert await may("payment_service", privilege, "payments.payouts"), privilege
        assert await conn.fetchval(
            "SELECT has_sequence_privilege('payment_service', 'payments.payouts_id_seq', 'USAGE')"
        )
        assert not await may("auth_service", "SELECT", "payments.payouts")
        assert await may("transactions_service", "SELECT", "transactions.entries")
        assert await may("transactions_service", "INSERT", "transactions.entries")
        assert not await may("transactions_service", "UPDATE", "transactions.entries")
        assert not await may("transactions_service", "DELETE", "transactions.entries")
    finally:
        await conn.close()


def test_postgresql_sql_is_generated_from_the_migrations() -> None:
    assert SCHEMA_FILE.read_text() == schema_sql(), (
        "PostgreSQL.sql is out of date with the migrations: regenerate it with "
        "`make schema-sql` (python -m migrations sql > PostgreSQL.sql)"
    )


async def test_postgresql_sql_run_by_hand_builds_what_migrate_builds(
    new_database: NewDatabase,
) -> None:
    url = await new_database()
    done = await run_psql(url, SCHEMA_FILE)
    assert done.returncode == 0, done.stderr
    by_hand = await snapshot_of(url)
    assert_same_schema(
        by_hand, await fresh_schema(new_database), "PostgreSQL.sql differs from `make migrate`"
    )

    assert await upgrade_database(url) == head_revision()
    assert_same_schema(await snapshot_of(url), by_hand, "`make migrate` after PostgreSQL.sql")

    again = await run_psql(url, SCHEMA_FILE)
    assert again.returncode != 0
    assert "make migrate" in again.stderr
    assert_same_schema(await snapshot_of(url), by_hand, "PostgreSQL.sql run twice")


def test_the_history_is_one_line_from_the_baseline() -> None:
    script = ScriptDirectory.from_config(alembic_config())
    revisions = list(script.walk_revisions())  # newest first
    assert script.get_heads() == [head_revision()], "more than one head: merge the branches"
    assert revisions[-1].revision == BASELINE
    assert revisions[-1].down_revision is None
    for revision in revisions[:-1]:
        assert isinstance(revision.down_revision, str), f"{revision.revision} merges branches"
        assert revision.revision in Path(revision.path).name


async def test_the_schema_comparison_sees_each_kind_of_difference(
    new_database: NewDatabase,
) -> None:
    url = await new_database()
    await upgrade_database(url)
    before = await snapshot_of(url)
    conn = await connect(url)
    try:
        await conn.execute(
            """
            ALTER TABLE payments.payments ALTER COLUMN description SET NOT NULL;
            ALTER TABLE transactions.accounts ALTER COLUMN balance SET DEFAULT 1;
            ALTER TABLE transactions.holds DROP CONSTRAINT holds_amount_check;
            ALTER TABLE transactions.holds ADD CONSTRAINT holds_amount_check CHECK (amount >= 0);
            DROP INDEX notifications.devices_user_idx;
            CREATE INDEX devices_user_idx ON notifications.devices (user_id, platform);
            REVOKE DELETE ON auth.sessions FROM auth_service;
            GRANT USAGE ON SCHEMA payments TO auth_service;
            ALTER TABLE auth.login_failures ADD COLUMN note text;
            """
        )
    finally:
        await conn.close()

    found = "\n".join(schema_differences(await snapshot_of(url), before))

    for expected in (
        "payments.payments.columns.description.not_null",
        "transactions.accounts.columns.balance.default",
        "transactions.holds.constraints.holds_amount_check",
        "notifications.devices.indexes.devices_user_idx",
        "relations.auth.sessions.privileges",
        "schemas.payments.privileges",
        "auth.login_failures.columns.note: only in the actual schema",
    ):
        assert expected in found, f"{expected} not reported in:\n{found}"
