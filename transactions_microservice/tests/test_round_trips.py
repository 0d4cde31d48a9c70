"""Each hot path is one statement on a connection in autocommit: one round trip, no BEGIN.

A transfer and the balance run on the app's asyncpg pool (`Direct`), the others on an
autocommit SQLAlchemy connection (`ConnectionDep`)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import pytest
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from micropay_common.db import Direct, create_engine, create_pool
from micropay_common.idempotency import StoredResponse
from micropay_common.idempotency.repository import Claim
from micropay_testing.apps import serve
from micropay_testing.processes import free_port
from stack.postgres import asyncpg_dsn
from transactions_microservice.accounts import service as accounts
from transactions_microservice.holds import service as holds
from transactions_microservice.holds.schemas import HoldCreate
from transactions_microservice.ledger import service as ledger
from transactions_microservice.main import create_app
from transactions_microservice.settings import TransactionsSettings
from transactions_microservice.state import TransactionsState
from transactions_microservice.transfers import service as transfers
from transactions_microservice.transfers.schemas import TransferCreate, TransferRead


@pytest.fixture
async def engine(tx_settings: TransactionsSettings) -> AsyncIterator[AsyncEngine]:
    """An engine of the service's role, as the app makes it."""
    engine = create_engine(tx_settings, "transactions")
    yield engine
    await engine.dispose()


@pytest.fixture
async def direct(tx_settings: TransactionsSettings) -> AsyncIterator[tuple[Direct, list[str]]]:
    """The app's `Direct` on a pool of one connection, and every statement that connection
    sends (asyncpg's own included: a BEGIN, COMMIT or reset query would be one)."""
    settings = tx_settings.model_copy(update={"db_pool_size": 1, "db_max_overflow": 0})
    pool = await create_pool(settings, "transactions")
    sent: list[str] = []
    async with pool.acquire() as connection:
        connection.add_query_logger(lambda logged: sent.append(logged.query))
    try:
        yield Direct(pool), sent
    finally:
        await pool.close()


async def one_direct_statement(
    direct: tuple[Direct, list[str]], work: Callable[[Direct], Awaitable[Any]]
) -> tuple[Any, str]:
    """What `work` returned on `Direct`, and the one statement it sent (else it fails)."""
    db, sent = direct
    sent.clear()
    result = await work(db)
    await asyncio.sleep(0)  # asyncpg calls its query loggers soon after, not at once
    assert len(sent) == 1, sent
    return result, sent[0]


@asynccontextmanager
async def counted(engine: AsyncEngine) -> AsyncIterator[tuple[AsyncConnection, list[str]]]:
    """A connection in autocommit, as `ConnectionDep` gives it, and every statement it sends:
    SQLAlchemy's, and asyncpg's own (a BEGIN or COMMIT would be one)."""
    async with engine.connect() as connection:
        await connection.execution_options(isolation_level="AUTOCOMMIT")
        sent: list[str] = []

        def record(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
            sent.append(statement)

        event.listen(connection.sync_connection, "before_cursor_execute", record)
        driver = (await connection.get_raw_connection()).driver_connection
        assert driver is not None
        with driver.query_logger(lambda logged: sent.append(logged.query)):
            yield connection, sent


async def one_statement(
    engine: AsyncEngine, work: Callable[[AsyncConnection], Awaitable[Any]]
) -> tuple[Any, str]:
    """What `work` returned, and the one statement it sent (it fails on any other count)."""
    async with counted(engine) as (connection, sent):
        result = await work(connection)
    assert len(sent) == 1, sent
    return result, sent[0]


def claim_of(owner: str, fingerprint: str = "f" * 64) -> Claim:
    return Claim(
        owner=owner,
        key=str(uuid.uuid4()),
        method="POST",
        path="/transactions/transfers",
        fingerprint=fingerprint,
        ttl_hours=24,
        lock_timeout_seconds=5,
    )


async def test_a_transfer_and_its_replay_are_one_statement_each(
    engine, direct, register, top_up, tx_settings
):
    alice, bob = await register(), await register()
    await top_up(alice, 1_000)
    request = TransferCreate(to_email=bob.email, amount=300, currency="USD")
    claim = claim_of(alice.id)

    def send(db: Direct) -> Awaitable[TransferRead | StoredResponse]:
        return transfers.create_transfer(
            db, alice.id, alice.email, request, settings=tx_settings, claim=claim
        )

    done, statement = await one_direct_statement(direct, send)
    assert "transactions.transfer(" in statement
    assert isinstance(done, TransferRead)
    again, _ = await one_direct_statement(direct, send)
    assert isinstance(again, StoredResponse)
    assert again.status == 201
    assert again.body == done.model_dump(mode="json")

    balances, statement = await one_direct_statement(
        direct, lambda db: accounts.balances(db, bob.id)
    )
    assert "FROM transactions.accounts" in statement
    assert [(b.currency, b.available) for b in balances.balances] == [("USD", 300)]
    page, _ = await one_statement(
        engine, lambda db: ledger.history(db, alice.id, limit=10, starting_after=None)
    )
    assert [(entry.type, entry.amount) for entry in page][:1] == [("transfer_out", -300)]


async def test_a_hold_and_its_capture_are_one_statement_each(engine, direct, register, top_up):
    member = await register()
    await top_up(member, 1_000)
    request = HoldCreate(
        user_id=member.id, amount=400, currency="USD", reference=f"re_{uuid.uuid4().hex}"
    )

    hold, statement = await one_statement(engine, lambda db: holds.create_hold(db, request, 900))
    assert "transactions.create_hold(" in statement
    assert hold.status == "active"
    captured, statement = await one_statement(engine, lambda db: holds.capture(db, hold.id))
    assert "transactions.capture_hold(" in statement
    assert captured.status == "captured"
    assert captured.transaction_id is not None

    balances, _ = await one_direct_statement(direct, lambda db: accounts.balances(db, member.id))
    assert [(b.balance, b.held) for b in balances.balances] == [(600, 0)]


async def test_the_balance_and_a_transfer_without_their_database_are_503_problems(
    tx_settings, register
):
    member = await register()
    app = create_app(tx_settings)
    async with serve(app) as client:
        state = TransactionsState.of(app)
        served = await client.get("/transactions/balance", headers=member.headers)
        assert served.status_code == 200, served.text
        # The pool's server gone: the app up (its token checks answer), the database not.
        closed = f"postgresql://transactions_service:x@127.0.0.1:{free_port()}/micropay"
        working, state.direct = (
            state.direct,
            Direct(await create_pool(tx_settings.model_copy(update={"database_url": closed}), "x")),
        )
        try:
            balance = await client.get("/transactions/balance", headers=member.headers)
            transfer = await client.post(
                "/transactions/transfers",
                json={"to_email": "someone@example.com", "amount": 1, "currency": "USD"},
                headers={**member.headers, "Idempotency-Key": str(uuid.uuid4())},
            )
        finally:
            await state.direct.pool.close()
            state.direct = working
    for response in (balance, transfer):
        assert response.status_code == 503, response.text
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["type"] == "service_unavailable"
        assert response.headers["retry-after"] == "2"


async def test_a_pooled_connection_the_server_ended_is_replaced(tx_settings, register, database):
    member = await register()
    app = create_app(tx_settings.model_copy(update={"db_pool_size": 1, "db_max_overflow": 0}))
    async with serve(app) as client:
        pool = TransactionsState.of(app).direct.pool
        first = await pool.fetchval("SELECT pg_backend_pid()")
        admin = await asyncpg.connect(**asyncpg_dsn(database.admin_url))
        try:
            assert await admin.fetchval("SELECT pg_terminate_backend($1, 5000)", first)
        finally:
            await admin.close()
        response = await client.get("/transactions/balance", headers=member.headers)
        assert response.status_code == 200, response.text
        assert await pool.fetchval("SELECT pg_backend_pid()") != first
