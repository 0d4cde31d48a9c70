"""The database itself refuses a ledger transaction whose entries do not sum to zero per
currency, at commit, whoever writes it: here SQL sent directly as the service's own role."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest

from micropay_testing.database import TestDatabase
from stack.postgres import connect


@pytest.fixture
async def as_service(database: TestDatabase) -> AsyncIterator[asyncpg.Connection]:
    """A connection as `transactions_service`, the role the service runs as."""
    conn = await connect(database.service_urls["transactions"])
    yield conn
    await conn.close()


async def system_account(conn: asyncpg.Connection, currency: str = "USD") -> int:
    """A system account of its own (system accounts may go negative), committed."""
    account: int = await conn.fetchval(
        "INSERT INTO transactions.accounts (kind, system_code, currency)"
        " VALUES ('system', $1, $2) RETURNING id",
        f"test_{uuid.uuid4().hex}",
        currency,
    )
    return account


async def new_transaction(conn: asyncpg.Connection) -> uuid.UUID:
    transaction_id = uuid.uuid4()
    await conn.execute(
        "INSERT INTO transactions.ledger_transactions (id, type, reference)"
        " VALUES ($1, 'top_up', $2)",
        transaction_id,
        str(transaction_id),
    )
    return transaction_id


async def add_entry(
    conn: asyncpg.Connection,
    transaction_id: uuid.UUID,
    account: int,
    amount: int,
    currency: str = "USD",
) -> None:
    """An entry, with the account's balance moved as a posting does (so what commits leaves
    the ledger check of the other tests clean)."""
    await conn.execute(
        "WITH moved AS (UPDATE transactions.accounts SET balance = balance + $3"
        " WHERE id = $2 RETURNING balance)"
        " INSERT INTO transactions.entries"
        " (transaction_id, account_id, type, amount, currency, balance_after)"
        " SELECT $1, $2, 'top_up', $3, $4, balance FROM moved",
        transaction_id,
        account,
        amount,
        currency,
    )


async def entry_count(conn: asyncpg.Connection, transaction_id: uuid.UUID) -> int:
    count: int = await conn.fetchval(
        "SELECT count(*) FROM transactions.entries WHERE transaction_id = $1", transaction_id
    )
    return count


async def test_money_created_from_nothing_is_refused_at_commit(as_service):
    account = await system_account(as_service)
    transaction = as_service.transaction()
    await transaction.start()
    transaction_id = await new_transaction(as_service)
    # The insert itself passes: the check is deferred to the commit.
    await add_entry(as_service, transaction_id, account, 5)
    with pytest.raises(asyncpg.CheckViolationError, match="does not balance"):
        await transaction.commit()
    assert await entry_count(as_service, transaction_id) == 0


async def test_entries_that_balance_only_across_currencies_are_refused(as_service):
    dollars, euros = (
        await system_account(as_service, "USD"),
        await system_account(as_service, "EUR"),
    )
    transaction = as_service.transaction()
    await transaction.start()
    transaction_id = await new_transaction(as_service)
    await add_entry(as_service, transaction_id, dollars, 500, "USD")
    await add_entry(as_service, transaction_id, euros, -500, "EUR")
    with pytest.raises(asyncpg.CheckViolationError):
        await transaction.commit()
    assert await entry_count(as_service, transaction_id) == 0


async def test_balanced_entries_written_by_separate_statements_commit(as_service):
    payer, payee = await system_account(as_service), await system_account(as_service)
    async with as_service.transaction():
        transaction_id = await new_transaction(as_service)
        await add_entry(as_service, transaction_id, payer, -700)
        await add_entry(as_service, transaction_id, payee, 300)
        await add_entry(as_service, transaction_id, payee, 400)
    assert await entry_count(as_service, transaction_id) == 3


async def test_an_entry_added_later_to_a_committed_transaction_is_refused(as_service):
    payer, payee = await system_account(as_service), await system_account(as_service)
    async with as_service.transaction():
        transaction_id = await new_transaction(as_service)
        await add_entry(as_service, transaction_id, payer, -100)
        await add_entry(as_service, transaction_id, payee, 100)
    with pytest.raises(asyncpg.CheckViolationError):
        await add_entry(as_service, transaction_id, payee, 100)  # autocommit: its own commit
    assert await entry_count(as_service, transaction_id) == 2


async def test_checking_early_does_not_let_a_later_entry_through(as_service):
    payer, payee = await system_account(as_service), await system_account(as_service)
    transaction = as_service.transaction()
    await transaction.start()
    transaction_id = await new_transaction(as_service)
    # Checked at once while it balances, then deferred again and unbalanced.
    await as_service.execute("SET CONSTRAINTS transactions.entries_balanced IMMEDIATE")
    await as_service.execute(
        "INSERT INTO transactions.entries"
        " (transaction_id, account_id, type, amount, currency, balance_after)"
        " VALUES ($1, $2, 'top_up', -100, 'USD', -100), ($1, $3, 'top_up', 100, 'USD', 100)",
        transaction_id,
        payer,
        payee,
    )  # rolled back in the end: the balances need not follow
    await as_service.execute("SET CONSTRAINTS transactions.entries_balanced DEFERRED")
    await add_entry(as_service, transaction_id, payee, 1_000_000)
    with pytest.raises(asyncpg.CheckViolationError):
        await transaction.commit()
    assert await entry_count(as_service, transaction_id) == 0


async def test_the_role_cannot_switch_the_check_off(as_service):
    for statement in (
        "ALTER TABLE transactions.entries DISABLE TRIGGER entries_balanced",
        "DROP TRIGGER entries_balanced ON transactions.entries",
        "SET session_replication_role = replica",
    ):
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await as_service.execute(statement)
