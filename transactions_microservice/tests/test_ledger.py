"""The ledger's guarantees: one posting function, database CHECKs, and an invariant check that
finds each kind of corruption."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import asyncpg
import pytest
from prometheus_client import CollectorRegistry
from sqlalchemy import NullPool, text
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine

from micropay_common.db import async_database_url
from micropay_testing.database import TestDatabase
from stack.postgres import connect
from transactions_microservice.accounts import repository as accounts_repository
from transactions_microservice.ledger import repository, service
from transactions_microservice.ledger.exceptions import InsufficientFunds, UnbalancedTransaction
from transactions_microservice.ledger.jobs import LedgerCheckGauges
from transactions_microservice.ledger.service import LedgerCheck, NewEntry, check_balanced
from transactions_microservice.models import AccountId, EntryType, LedgerTransactionType
from transactions_microservice.state import TransactionsState
from transactions_microservice.tests.helpers import ledger_check

TRANSFER = LedgerTransactionType.TRANSFER


def new_entry(
    *, account: int, amount: int, currency: str = "USD", type_: EntryType = EntryType.TOP_UP
) -> NewEntry:
    return NewEntry(account_id=AccountId(account), amount=amount, currency=currency, type=type_)


def transfer(payer: AccountId, payee: AccountId, amount: int, currency: str = "USD"):
    """The two entries of a transfer of `amount` from payer to payee."""
    return [
        new_entry(account=payer, amount=-amount, currency=currency, type_=EntryType.TRANSFER_OUT),
        new_entry(account=payee, amount=amount, currency=currency, type_=EntryType.TRANSFER_IN),
    ]


@pytest.mark.parametrize(
    "entries",
    [
        [],
        [new_entry(account=1, amount=5)],
        [new_entry(account=1, amount=5), new_entry(account=2, amount=-4)],
        [new_entry(account=1, amount=5), new_entry(account=2, amount=-5, currency="EUR")],
        [new_entry(account=1, amount=0), new_entry(account=2, amount=0)],
    ],
)
def test_unbalanced_entries_are_refused(entries):
    with pytest.raises(UnbalancedTransaction):
        check_balanced(entries)


def test_balanced_entries_pass():
    check_balanced(
        [
            new_entry(account=1, amount=5),
            new_entry(account=2, amount=-5),
            new_entry(account=3, amount=7, currency="EUR"),
            new_entry(account=4, amount=-7, currency="EUR"),
        ]
    )


def test_an_entry_is_built_by_name_and_an_amount_is_no_account_id() -> None:
    with pytest.raises(TypeError):
        NewEntry(AccountId(1), 5, "USD", EntryType.TOP_UP)  # type: ignore[call-arg]
    amount = 5
    # `make typecheck` refuses an int where an AccountId goes; should it ever accept one, this
    # ignore is unused and warn_unused_ignores fails the check.
    entry = NewEntry(account_id=amount, amount=amount, currency="USD", type=EntryType.TOP_UP)  # type: ignore[arg-type]
    assert entry.account_id == entry.amount


@pytest.fixture
async def session(tx_app) -> AsyncIterator[AsyncSession]:
    """A session of the app's own role whose changes are rolled back at the end."""
    async with TransactionsState.of(tx_app).sessionmaker() as session:
        yield session
        await session.rollback()


@pytest.fixture
async def wallets(session, register, top_up) -> tuple[int, int]:
    payer, payee = await register(), await register()
    await top_up(payer, 1_000)
    ids = await accounts_repository.wallet_ids(session, [payer.id, payee.id], "USD")
    return ids[payer.id], ids[payee.id]


async def test_post_moves_balances_and_records_balance_after(session, wallets):
    payer, payee = wallets
    posted = await service.post(
        session,
        type_=TRANSFER,
        reference=str(uuid.uuid4()),
        entries=transfer(payer, payee, 300),
    )
    assert posted is not None
    assert posted.balances_after == {payer: 700, payee: 300}
    rows = (
        await session.execute(
            text(
                "SELECT account_id, amount, balance_after FROM transactions.entries"
                " WHERE transaction_id = :id ORDER BY id"
            ),
            {"id": posted.id},
        )
    ).all()
    assert [tuple(row) for row in rows] == [(payer, -300, 700), (payee, 300, 300)]


async def test_post_refuses_an_overdraft_before_writing(session, wallets):
    payer, payee = wallets
    reference = str(uuid.uuid4())
    with pytest.raises(InsufficientFunds):
        await service.post(
            session,
            type_=TRANSFER,
            reference=reference,
            entries=transfer(payer, payee, 1_001),
        )
    assert await repository.transaction_by_reference(session, TRANSFER, reference) is None


async def test_post_refuses_an_entry_in_the_wrong_currency(session, wallets, register):
    payer, _ = wallets
    euro_wallet = await accounts_repository.open_wallet(session, (await register()).id, "EUR")
    with pytest.raises(UnbalancedTransaction):
        await service.post(
            session,
            type_=TRANSFER,
            reference=str(uuid.uuid4()),
            entries=transfer(payer, euro_wallet, 1, currency="EUR"),
        )


async def test_post_writes_a_reference_once(session, wallets):
    payer, payee = wallets
    entries = transfer(payer, payee, 1)
    first = await service.post(session, type_=TRANSFER, reference="once", entries=entries)
    second = await service.post(session, type_=TRANSFER, reference="once", entries=entries)
    assert first is not None
    assert second is None
    assert (await service.lock_accounts(session, [payer]))[payer].balance == 999


@pytest.fixture
async def as_service(database: TestDatabase) -> AsyncIterator[asyncpg.Connection]:
    """A connection as the service's own role, inside a transaction rolled back at the end."""
    conn = await connect(database.service_urls["transactions"])
    transaction = conn.transaction()
    await transaction.start()
    yield conn
    await transaction.rollback()
    await conn.close()


@pytest.mark.parametrize(
    "change",
    [
        "balance = -1",
        "held = balance + 1",
        "held = -1",
    ],
)
async def test_the_database_refuses_a_negative_wallet(as_service, wallets, change):
    payer, _ = wallets
    with pytest.raises(asyncpg.CheckViolationError):
        await as_service.execute(f"UPDATE transactions.accounts SET {change} WHERE id = $1", payer)


@pytest.fixture
async def admin_session(database: TestDatabase) -> AsyncIterator[AsyncSession]:
    """A superuser's session, rolled back at the end, to damage the ledger for the check."""
    # The service's own role may not rewrite ledger rows (revision 0002): only an admin can.
    engine = create_async_engine(async_database_url(database.admin_url), poolclass=NullPool)
    try:
        async with AsyncSession(engine) as session:
            yield session
            await session.rollback()
    finally:
        await engine.dispose()


async def corrupt_and_check(session: AsyncSession, statement: str, **params: Any) -> Any:
    await session.execute(text(statement), params)
    return await repository.run_checks(session)


async def test_the_check_finds_a_balance_that_is_not_the_sum_of_entries(admin_session, wallets):
    payer, _ = wallets
    found = await corrupt_and_check(
        admin_session,
        "UPDATE transactions.accounts SET balance = balance + 1 WHERE id = :id",
        id=payer,
    )
    assert [row["id"] for row in found["balance_mismatches"]] == [payer]


async def test_the_check_finds_an_unbalanced_transaction(admin_session, wallets):
    payer, _ = wallets
    transaction_id = uuid.uuid4()
    await admin_session.execute(
        text(
            "INSERT INTO transactions.ledger_transactions (id, type, reference)"
            " VALUES (CAST(:id AS uuid), 'top_up', CAST(:id AS text))"
        ),
        {"id": transaction_id},
    )
    found = await corrupt_and_check(
        admin_session,
        "INSERT INTO transactions.entries"
        " (transaction_id, account_id, type, amount, currency, balance_after)"
        " VALUES (:tx, :account, 'top_up', 5, 'USD', 1005)",
        tx=transaction_id,
        account=payer,
    )
    assert [row["transaction_id"] for row in found["unbalanced_transactions"]] == [transaction_id]
    assert payer in [row["id"] for row in found["balance_mismatches"]]


async def test_the_check_finds_a_wrong_balance_after(admin_session, wallets):
    payer, _ = wallets
    found = await corrupt_and_check(
        admin_session,
        "UPDATE transactions.entries SET balance_after = balance_after + 1 WHERE account_id = :id",
        id=payer,
    )
    assert [row["account_id"] for row in found["balance_after_mismatches"]] == [payer]


async def test_the_check_finds_held_money_without_a_hold(admin_session, wallets):
    payer, _ = wallets
    found = await corrupt_and_check(
        admin_session, "UPDATE transactions.accounts SET held = 10 WHERE id = :id", id=payer
    )
    assert [row["id"] for row in found["held_mismatches"]] == [payer]


async def test_the_check_finds_a_transaction_without_entries(admin_session):
    transaction_id = uuid.uuid4()
    found = await corrupt_and_check(
        admin_session,
        "INSERT INTO transactions.ledger_transactions (id, type, reference)"
        " VALUES (CAST(:id AS uuid), 'top_up', CAST(:id AS text))",
        id=transaction_id,
    )
    assert [row["id"] for row in found["transactions_without_entries"]] == [transaction_id]


async def test_the_check_endpoint_reports_a_clean_ledger(client, service_headers, wallets):
    result = await ledger_check(client, service_headers)
    assert result["ok"] is True
    assert set(result["violations"]) == set(repository.CHECKS)
    assert all(rows == [] for rows in result["violations"].values())
    assert result["counts"]["entries"] >= 2


async def test_the_check_endpoint_is_for_services_only(client, register):
    member = await register()
    response = await client.get("/internal/ledger/check", headers=member.headers)
    assert response.status_code == 403
    assert (await client.get("/internal/ledger/check")).status_code == 401


def test_the_gauges_show_the_latest_checks_outcome() -> None:
    registry = CollectorRegistry()
    gauges = LedgerCheckGauges.register(registry)
    checked_at = datetime(2026, 12, 2, 20, 0, tzinfo=UTC)
    failing = LedgerCheck(
        ok=False,
        checked_at=checked_at,
        counts={},
        violations={"balance_mismatches": [{"id": 1}, {"id": 2}], "unbalanced": []},
    )
    gauges.show(failing)
    assert registry.get_sample_value("micropay_ledger_check_ok") == 0
    found = {"invariant": "balance_mismatches"}
    assert registry.get_sample_value("micropay_ledger_check_violations", found) == 2
    assert (
        registry.get_sample_value("micropay_ledger_check_violations", {"invariant": "unbalanced"})
        == 0
    )
    assert (
        registry.get_sample_value("micropay_ledger_check_timestamp_seconds")
        == checked_at.timestamp()
    )
    gauges.show(
        LedgerCheck(
            ok=True, checked_at=checked_at, counts={}, violations={"balance_mismatches": []}
        )
    )
    assert registry.get_sample_value("micropay_ledger_check_ok") == 1
    assert registry.get_sample_value("micropay_ledger_check_violations", found) == 0
