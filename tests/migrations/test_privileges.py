"""Least privilege (revision 0002): each role holds on each table only what its code uses."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

import asyncpg
import pytest
from alembic import command
from sqlalchemy import Connection

from micropay_testing.database import TestDatabase
from micropay_testing.privileges import (
    ADDED_AFTER_BASELINE,
    ALL,
    DENY_LIST,
    DENY_LIST_COLUMNS,
    DENY_LIST_READERS,
    EXPECTED,
    EXPECTED_BY_ROLE,
    held_privileges,
    readable_columns,
)
from migrations import BASELINE, head_revision, upgrade_database
from migrations.runner import alembic_config
from migrations.runner import connect as connect_admin
from stack.postgres import connect

NewDatabase = Callable[[], Awaitable[str]]
SERVICE_OF_ROLE = {
    "auth_service": "auth",
    "payment_service": "payment",
    "transactions_service": "transactions",
    "notifications_service": "notifications",
}
LEDGER_CHANGES = (
    "UPDATE transactions.ledger_transactions SET description = 'rewritten' WHERE id = $1",
    "DELETE FROM transactions.ledger_transactions WHERE id = $1",
    "UPDATE transactions.entries SET amount = amount * 100 WHERE transaction_id = $1",
    "DELETE FROM transactions.entries WHERE transaction_id = $1",
)
WRITES = [
    (role, f"{schema}.{table}", privilege)
    for (role, schema), tables in EXPECTED.items()
    for table in tables
    for privilege in ("UPDATE", "DELETE")
]


@pytest.fixture
async def admin(database: TestDatabase) -> AsyncIterator[asyncpg.Connection]:
    """A superuser connection to the test database."""
    conn = await connect(database.admin_url)
    yield conn
    await conn.close()


@pytest.fixture
async def as_role(
    database: TestDatabase,
) -> AsyncIterator[Callable[[str], Awaitable[asyncpg.Connection]]]:
    """Connections as service roles, each in a transaction rolled back at the end."""
    opened: list[tuple[asyncpg.Connection, asyncpg.transaction.Transaction]] = []

    async def open_as(role: str) -> asyncpg.Connection:
        conn = await connect(database.service_urls[SERVICE_OF_ROLE[role]])
        transaction = conn.transaction()
        await transaction.start()
        opened.append((conn, transaction))
        return conn

    yield open_as
    for conn, transaction in opened:
        await transaction.rollback()
        await conn.close()


async def refused(conn: asyncpg.Connection, statement: str, *args: object) -> bool:
    """Whether PostgreSQL refuses `statement` for lack of privilege (in a savepoint)."""
    try:
        async with conn.transaction():
            await conn.execute(statement, *args)
    except asyncpg.InsufficientPrivilegeError:
        return True
    return False


@pytest.mark.parametrize("role", list(EXPECTED_BY_ROLE))
async def test_each_role_holds_exactly_the_privileges_its_code_uses(
    admin: asyncpg.Connection, role: str
) -> None:
    schema, expected = EXPECTED_BY_ROLE[role]
    # A table added later gets all four privileges after the upgrade: it must be reviewed here.
    assert await held_privileges(admin, role, schema) == {
        table: set(privileges) for table, privileges in expected.items()
    }


async def test_the_transactions_role_appends_to_the_ledger_but_cannot_change_it(
    as_role: Callable[[str], Awaitable[asyncpg.Connection]],
) -> None:
    conn = await as_role("transactions_service")
    transaction_id = uuid.uuid4()
    account = await conn.fetchval(
        "INSERT INTO transactions.accounts (kind, system_code, currency)"
        " VALUES ('system', $1, 'EUR') RETURNING id",
        f"test_{transaction_id.hex}",
    )
    await conn.execute(
        "INSERT INTO transactions.ledger_transactions (id, type, reference)"
        " VALUES ($1, 'top_up', $2)",
        transaction_id,
        str(transaction_id),
    )
    await conn.execute(
        "INSERT INTO transactions.entries"
        " (transaction_id, account_id, type, amount, currency, balance_after)"
        " VALUES ($1, $2, 'top_up', 5, 'EUR', 5)",
        transaction_id,
        account,
    )
    for statement in LEDGER_CHANGES:
        assert await refused(conn, statement, transaction_id), statement
    for table in ("ledger_transactions", "entries"):
        assert await refused(conn, f"TRUNCATE transactions.{table}"), table
    assert (
        await conn.fetchval(
            "SELECT amount FROM transactions.entries WHERE transaction_id = $1", transaction_id
        )
        == 5
    )


@pytest.mark.parametrize("role", list(EXPECTED_BY_ROLE))
@pytest.mark.parametrize("statement", LEDGER_CHANGES)
async def test_no_service_role_may_change_ledger_rows(
    as_role: Callable[[str], Awaitable[asyncpg.Connection]], role: str, statement: str
) -> None:
    conn = await as_role(role)
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await conn.execute(statement, uuid.uuid4())


@pytest.mark.parametrize(("role", "table", "privilege"), WRITES)
async def test_updates_and_deletes_run_only_where_the_role_keeps_them(
    admin: asyncpg.Connection,
    as_role: Callable[[str], Awaitable[asyncpg.Connection]],
    role: str,
    table: str,
    privilege: str,
) -> None:
    schema, expected = EXPECTED_BY_ROLE[role]
    if privilege == "UPDATE":
        column = await admin.fetchval(
            "SELECT attname FROM pg_catalog.pg_attribute WHERE attrelid = $1::regclass"
            " AND attnum > 0 AND NOT attisdropped AND attidentity = '' AND attgenerated = ''"
            " ORDER BY attnum LIMIT 1",
            table,
        )
        statement = f"UPDATE {table} SET {column} = {column} WHERE false"
    else:
        statement = f"DELETE FROM {table} WHERE false"
    kept = privilege in expected[table.removeprefix(f"{schema}.")]
    assert await refused(await as_role(role), statement) is not kept, statement


async def test_only_the_transactions_role_runs_its_functions_and_with_its_own_privileges(
    admin: asyncpg.Connection,
    as_role: Callable[[str], Awaitable[asyncpg.Connection]],
) -> None:
    # Revision 0011: the hot paths as functions. SECURITY INVOKER, so the grants above still
    # bound what they do; EXECUTE for the service's role alone (not PUBLIC, the default).
    functions = await admin.fetch(
        "SELECT p.oid::regprocedure::text AS name, p.prosecdef AS definer,"
        " array_agg(r.rolname ORDER BY r.rolname) FILTER"
        " (WHERE has_function_privilege(r.oid, p.oid, 'EXECUTE')) AS executors"
        " FROM pg_catalog.pg_proc p CROSS JOIN pg_catalog.pg_roles r"
        " WHERE p.pronamespace = 'transactions'::regnamespace"
        " AND p.prorettype <> 'trigger'::regtype AND r.rolname = ANY($1::text[])"
        " GROUP BY p.oid",
        list(SERVICE_OF_ROLE),
    )
    names = {row["name"].split("(")[0] for row in functions}
    assert {
        "transactions.transfer",
        "transactions.create_hold",
        "transactions.capture_hold",
    } <= names
    for row in functions:
        assert row["definer"] is False, row["name"]
        assert row["executors"] == ["transactions_service"], row["name"]
    conn = await as_role("payment_service")
    assert await refused(conn, "SELECT transactions.capture_hold($1)", uuid.uuid4())


@pytest.mark.parametrize("role", DENY_LIST_READERS)
async def test_the_other_roles_read_the_deny_lists_keys_and_nothing_else_of_auth(
    admin: asyncpg.Connection,
    as_role: Callable[[str], Awaitable[asyncpg.Connection]],
    role: str,
) -> None:
    # Revision 0006: every replica fills its deny-set from these three columns.
    assert await readable_columns(admin, role, DENY_LIST) == DENY_LIST_COLUMNS
    assert await held_privileges(admin, role, "auth") == {
        table: set() for table in EXPECTED_BY_ROLE["auth_service"][1]
    }
    conn = await as_role(role)
    key = f"privileges-{uuid.uuid4()}"
    await admin.execute(
        "INSERT INTO auth.revoked_tokens (origin_jti, user_id, expires_at)"
        " VALUES ($1, $2, now() + interval '1 minute')",
        key,
        uuid.uuid4(),
    )
    try:
        row = await conn.fetchrow(
            "SELECT origin_jti, expires_at, revoked_at FROM auth.revoked_tokens"
            " WHERE origin_jti = $1 AND revoked_at > now() - interval '1 hour'",
            key,
        )
        assert row is not None
        assert row["origin_jti"] == key
        for statement in (
            "SELECT user_id FROM auth.revoked_tokens",
            "SELECT * FROM auth.revoked_tokens",
            "SELECT count(*) FROM auth.users",
            "SELECT count(*) FROM auth.sessions",
            "SELECT count(*) FROM auth.login_failures",
            "SELECT count(*) FROM auth.outbox",
            "INSERT INTO auth.revoked_tokens (origin_jti, user_id, expires_at)"
            " VALUES ('forged', gen_random_uuid(), now())",
            "UPDATE auth.revoked_tokens SET expires_at = now() WHERE false",
            "DELETE FROM auth.revoked_tokens WHERE false",
            "TRUNCATE auth.revoked_tokens",
        ):
            assert await refused(conn, statement), (role, statement)
    finally:
        await admin.execute("DELETE FROM auth.revoked_tokens WHERE origin_jti = $1", key)


def _downgrade(connection: Connection) -> None:
    command.downgrade(alembic_config(connection=connection), BASELINE)


async def test_the_downgrade_gives_the_privileges_back_and_the_upgrade_narrows_them_again(
    new_database: NewDatabase,
) -> None:
    url = await new_database()
    await upgrade_database(url)
    async with connect_admin(url) as connection:
        await connection.run_sync(_downgrade)
        await connection.commit()
    conn = await connect(url)
    try:
        for role, (schema, tables) in EXPECTED_BY_ROLE.items():
            assert await held_privileges(conn, role, schema) == {
                table: set(ALL)
                for table in tables
                if f"{schema}.{table}" not in ADDED_AFTER_BASELINE
            }
        for role in DENY_LIST_READERS:
            assert await readable_columns(conn, role, DENY_LIST) == set()
        assert await upgrade_database(url) == head_revision()
        for role, (schema, tables) in EXPECTED_BY_ROLE.items():
            assert await held_privileges(conn, role, schema) == {
                table: set(privileges) for table, privileges in tables.items()
            }
        for role in DENY_LIST_READERS:
            assert await readable_columns(conn, role, DENY_LIST) == DENY_LIST_COLUMNS
    finally:
        await conn.close()


@pytest.mark.parametrize("role", list(SERVICE_OF_ROLE))
async def test_a_committed_outbox_row_announces_itself_and_a_rolled_back_one_does_not(
    database: TestDatabase, admin: asyncpg.Connection, role: str
) -> None:
    # Revision 0012: the relays wake on the trigger's notification, whoever wrote the row.
    schema = EXPECTED_BY_ROLE[role][0]
    heard: asyncio.Queue[str] = asyncio.Queue()
    await admin.add_listener(f"micropay_outbox_{schema}", lambda *args: heard.put_nowait(args[2]))
    conn = await connect(database.service_urls[SERVICE_OF_ROLE[role]])
    insert = (
        f"INSERT INTO {schema}.outbox (event_id, event_type, consumer, payload)"
        " VALUES ($1, 'test.announced', 'notifications', '{}') RETURNING id"
    )
    try:
        rolled_back = conn.transaction()
        await rolled_back.start()
        await conn.fetchval(insert, uuid.uuid4())
        await rolled_back.rollback()
        async with conn.transaction():
            row_id = await conn.fetchval(insert, uuid.uuid4())
        assert await asyncio.wait_for(heard.get(), timeout=5) == f"micropay_outbox_{schema}"
        assert heard.empty()
    finally:
        await admin.execute(f"DELETE FROM {schema}.outbox WHERE event_type = 'test.announced'")
        await conn.close()
    assert row_id is not None


async def test_new_due_notifications_announce_themselves_and_skipped_ones_do_not(
    database: TestDatabase, admin: asyncpg.Connection
) -> None:
    # Revision 0021: the delivery workers wake on the trigger's notification.
    heard: asyncio.Queue[str] = asyncio.Queue()
    await admin.add_listener("micropay_notifications_due", lambda *a: heard.put_nowait(a[2]))
    conn = await connect(database.service_urls["notifications"])
    user_id = f"announce-{uuid.uuid4()}"
    insert = (
        "INSERT INTO notifications.notifications"
        " (id, event_id, event_type, user_id, channel, subject, body_text, payload, status)"
        " VALUES ($1, $2, 'test.announced', $3, 'push', 's', 't', '{}', $4)"
    )
    try:
        async with conn.transaction():
            await conn.execute(insert, uuid.uuid4(), uuid.uuid4(), user_id, "skipped")
        rolled_back = conn.transaction()
        await rolled_back.start()
        await conn.execute(insert, uuid.uuid4(), uuid.uuid4(), user_id, "pending")
        await rolled_back.rollback()
        await asyncio.sleep(0.3)
        assert heard.empty(), "neither a skipped row nor a rolled-back one is announced"
        async with conn.transaction():
            await conn.execute(insert, uuid.uuid4(), uuid.uuid4(), user_id, "pending")
            await conn.execute(insert, uuid.uuid4(), uuid.uuid4(), user_id, "skipped")
        assert await asyncio.wait_for(heard.get(), timeout=5) == "micropay_notifications_due"
        await asyncio.sleep(0.3)
        assert heard.empty(), "one transaction, one notification"
    finally:
        await admin.execute("DELETE FROM notifications.notifications WHERE user_id = $1", user_id)
        await conn.close()
