"""Pooled connections: checked before use only after sitting idle, replaced when broken."""

from __future__ import annotations

import asyncio
from collections import Counter

import asyncpg
import pytest
from sqlalchemy import func, select, text
from sqlalchemy.exc import DBAPIError

from micropay_common import db
from stack.postgres import asyncpg_dsn


async def _backend_pid(engine) -> int:
    async with engine.connect() as connection:
        return int((await connection.execute(text("SELECT pg_backend_pid()"))).scalar_one())


async def _terminate(admin_url: str, pid: int) -> None:
    admin = await asyncpg.connect(**asyncpg_dsn(admin_url))
    try:
        assert await admin.fetchval("SELECT pg_terminate_backend($1, 5000)", pid)
    finally:
        await admin.close()


async def test_an_idle_connection_that_died_is_replaced_before_use(service_settings, database):
    settings = service_settings("transactions", db_pool_size=1, db_ping_after_idle_seconds=0.05)
    engine = db.create_engine(settings, "transactions")
    try:
        first = await _backend_pid(engine)
        await _terminate(database.admin_url, first)
        await asyncio.sleep(0.1)
        assert await _backend_pid(engine) != first
    finally:
        await engine.dispose()


async def test_a_busy_connection_is_not_pinged_and_a_broken_one_renews_the_pool(
    service_settings, database
):
    engine = db.create_engine(service_settings("transactions", db_pool_size=2), "transactions")
    try:
        async with engine.connect() as one, engine.connect() as two:
            pids = [
                int((await c.execute(text("SELECT pg_backend_pid()"))).scalar_one())
                for c in (one, two)
            ]
        for pid in pids:
            await _terminate(database.admin_url, pid)
        # No ping within the idle window: the request on a dead connection fails (a 503 in a
        # service) and the pool drops every connection opened before the failure ...
        with pytest.raises(DBAPIError) as failure:
            await _backend_pid(engine)
        assert failure.value.connection_invalidated
        # ... so the next request, whichever pooled connection it would have had, works.
        assert await _backend_pid(engine) not in pids
    finally:
        await engine.dispose()


async def test_a_direct_statement_on_a_connection_the_server_just_ended_runs_on_a_new_one(
    service_settings, database
):
    """The server's farewell can be read before the socket closes: that connection is idle to
    the pool but refuses every command. The statement never left, so it runs on a fresh one."""
    settings = service_settings("transactions", db_pool_size=1, db_max_overflow=0)
    pool = await db.create_pool(settings, "transactions")
    direct = db.Direct(pool)
    backend_pid = db.Statement.of(select(func.pg_backend_pid()))
    admin = await asyncpg.connect(**asyncpg_dsn(database.admin_url))
    outcomes: Counter[str] = Counter()
    try:
        for attempt in range(100):
            pid = await direct.fetchval(backend_pid)
            await admin.execute("SELECT pg_terminate_backend($1)", pid)
            # Land at different moments of the farewell: before, while and after it is read.
            await asyncio.sleep(0.0005 * (attempt % 10))
            try:
                assert await direct.fetchval(backend_pid) != pid
                outcomes["ran"] += 1
            except (ConnectionError, asyncpg.PostgresConnectionError) as error:
                # Sent as the server was ending the connection: whether it ran is unknown, and
                # the caller answers 503 (an idempotent retry finds out).
                outcomes[type(error).__name__] += 1
    finally:
        await admin.close()
        await pool.close()
    assert outcomes["ran"] >= 50, outcomes
