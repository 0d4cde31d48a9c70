"""History: cursor pages, filters, one entry by id (own only), and keyset reads at any depth."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import event

from micropay_common.db import Direct, create_pool
from transactions_microservice.accounts import service as accounts
from transactions_microservice.state import TransactionsState
from transactions_microservice.tests.helpers import all_entries, ledger_check

SEEDED_ENTRIES = 2_000


async def seed_top_ups(admin, wallet_id: int, count: int) -> None:
    """`count` one-cent top-ups of a fresh wallet, one second apart, written by SQL.

    They come from a system account of their own, so every invariant still holds.
    """
    code = f"test_seed_{uuid.uuid4().hex[:8]}"
    source = await admin.fetchval(
        "INSERT INTO transactions.accounts (kind, system_code, currency)"
        " VALUES ('system', $1, 'USD') RETURNING id",
        code,
    )
    await admin.execute(
        """
        WITH t AS (
            INSERT INTO transactions.ledger_transactions (id, type, reference, created_at)
            SELECT gen_random_uuid(), 'top_up', $1 || '-' || g,
                   now() - make_interval(secs => $2::int - g)
            FROM generate_series(1, $2::int) AS g
            RETURNING id, created_at
        )
        INSERT INTO transactions.entries
            (transaction_id, account_id, type, amount, currency, balance_after, created_at)
        SELECT t.id, x.account_id, 'top_up', x.sign, 'USD', x.sign * t.n, t.created_at
        FROM (SELECT id, created_at, row_number() OVER (ORDER BY created_at) AS n FROM t) AS t
        CROSS JOIN (VALUES ($3::bigint, 1), ($4::bigint, -1)) AS x(account_id, sign)
        ORDER BY t.n, x.sign DESC
        """,
        code,
        count,
        wallet_id,
        source,
    )
    await admin.execute(
        "UPDATE transactions.accounts SET balance = CASE id WHEN $1 THEN $3 ELSE -$3::bigint END"
        " WHERE id IN ($1, $2)",
        wallet_id,
        source,
        count,
    )
    await admin.execute("ANALYZE transactions.entries")


@pytest.fixture(scope="module")
async def seeded(register, admin):
    member = await register()
    wallet_id = await admin.fetchval(
        "SELECT id FROM transactions.accounts WHERE user_id = $1", member.id
    )
    await seed_top_ups(admin, wallet_id, SEEDED_ENTRIES)
    return member


@pytest.fixture(scope="module")
async def pair(register, top_up, client):
    alice, bob = await register(), await register()
    await top_up(alice, 5_000)
    for amount in (100, 200, 300):
        response = await client.post(
            "/transactions/transfers",
            json={"to_email": bob.email, "amount": amount, "currency": "USD"},
            headers={**alice.headers, "Idempotency-Key": uuid.uuid4().hex},
        )
        assert response.status_code == 201
    await client.post(
        "/transactions/transfers",
        json={"to_email": alice.email, "amount": 50, "currency": "USD"},
        headers={**bob.headers, "Idempotency-Key": uuid.uuid4().hex},
    )
    return alice, bob


async def test_lines_come_newest_first_in_pages(client, pair):
    alice, _ = pair
    first = (await client.get("/transactions?limit=2", headers=alice.headers)).json()
    second = (
        await client.get(
            f"/transactions?limit=2&starting_after={first['data'][-1]['id']}",
            headers=alice.headers,
        )
    ).json()
    last = (
        await client.get(
            f"/transactions?limit=2&starting_after={second['data'][-1]['id']}",
            headers=alice.headers,
        )
    ).json()

    assert first["has_more"] is True
    assert second["has_more"] is True
    assert last["has_more"] is False
    entries = first["data"] + second["data"] + last["data"]
    assert [(entry["type"], entry["amount"]) for entry in entries] == [
        ("transfer_in", 50),
        ("transfer_out", -300),
        ("transfer_out", -200),
        ("transfer_out", -100),
        ("top_up", 5_000),
    ]
    assert [entry["balance_after"] for entry in entries] == [4_450, 4_400, 4_700, 4_900, 5_000]


async def test_the_default_page_is_ten_lines(client, seeded):
    page = (await client.get("/transactions", headers=seeded.headers)).json()
    assert len(page["data"]) == 10
    assert page["has_more"] is True


async def test_lines_filter_by_type(client, pair):
    alice, bob = pair
    sent = await all_entries(client, alice, type="transfer_out")
    received = await all_entries(client, bob, type="transfer_in")
    assert [entry["amount"] for entry in sent] == [-300, -200, -100]
    assert [entry["amount"] for entry in received] == [300, 200, 100]


async def test_lines_filter_by_date(client, seeded):
    now = datetime.now(UTC)
    window = await all_entries(
        client,
        seeded,
        created_gte=(now - timedelta(seconds=1_500)).isoformat(),
        created_lt=(now - timedelta(seconds=1_000)).isoformat(),
    )
    # The seed is one entry a second, the newest at the seeding moment (just before `now`).
    assert 499 <= len(window) <= 501
    stamps = [datetime.fromisoformat(entry["created_at"]) for entry in window]
    assert all(now - timedelta(seconds=1_500) <= s < now - timedelta(seconds=1_000) for s in stamps)
    assert stamps == sorted(stamps, reverse=True)


async def test_lines_filter_by_currency(client, register, top_up):
    member = await register()
    await top_up(member, 100, "USD")
    await top_up(member, 200, "EUR")
    assert [entry["amount"] for entry in await all_entries(client, member, currency="eur")] == [200]
    assert len(await all_entries(client, member)) == 2


async def test_walking_every_page_yields_every_entry_once(client, seeded):
    entries = await all_entries(client, seeded, limit=97)
    assert len(entries) == SEEDED_ENTRIES
    assert len({entry["id"] for entry in entries}) == SEEDED_ENTRIES
    assert [entry["balance_after"] for entry in entries] == list(range(SEEDED_ENTRIES, 0, -1))


@pytest.mark.parametrize(
    "query",
    [
        "limit=0",
        "limit=101",
        "type=payout",
        "currency=XYZ",
        "created_gte=2024-01-01T00:00:00",  # no offset: ambiguous
        "created_lt=0001-01-01T00:00:00%2B05:00",  # no such instant in UTC
        "starting_after=abc",
    ],
)
async def test_invalid_queries_are_422(client, seeded, query):
    response = await client.get(f"/transactions?{query}", headers=seeded.headers)
    assert response.status_code == 422
    assert response.json()["type"] == "validation_error"


async def test_a_cursor_from_another_users_history_is_400(client, pair):
    alice, bob = pair
    bobs_entry = (await all_entries(client, bob))[0]["id"]
    response = await client.get(f"/transactions?starting_after={bobs_entry}", headers=alice.headers)
    assert response.status_code == 400
    assert response.json()["type"] == "invalid_cursor"


async def test_a_page_after_the_oldest_entry_is_empty(client, pair):
    alice, _ = pair
    oldest = (await all_entries(client, alice))[-1]["id"]
    response = await client.get(f"/transactions?starting_after={oldest}", headers=alice.headers)
    assert response.status_code == 200
    assert response.json() == {"data": [], "has_more": False}


async def test_one_entry_by_id(client, pair):
    alice, _ = pair
    listed = (await all_entries(client, alice))[1]
    response = await client.get(f"/transactions/{listed['id']}", headers=alice.headers)
    assert response.status_code == 200
    assert response.json() == listed


async def test_another_users_entry_is_404(client, pair):
    alice, bob = pair
    bobs_entry = (await all_entries(client, bob))[0]["id"]
    for entry_id in (bobs_entry, 9_000_000_000):
        response = await client.get(f"/transactions/{entry_id}", headers=alice.headers)
        assert response.status_code == 404
        assert response.json()["type"] == "not_found"


async def test_a_non_numeric_entry_id_is_404(client, pair):
    alice, _ = pair
    response = await client.get("/transactions/not-a-number", headers=alice.headers)
    assert response.status_code == 404


async def test_history_needs_a_token(client):
    assert (await client.get("/transactions")).status_code == 401
    assert (await client.get("/transactions/balance")).status_code == 401


@contextmanager
def captured_sql(app) -> Iterator[list[tuple[str, Any]]]:
    """The statements the app sends to PostgreSQL while the block runs."""
    statements: list[tuple[str, Any]] = []
    engine = TransactionsState.of(app).engine.sync_engine

    def record(conn, cursor, statement, parameters, context, executemany):
        statements.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", record)
    try:
        yield statements
    finally:
        event.remove(engine, "before_cursor_execute", record)


def plan_nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", []):
        yield from plan_nodes(child)


async def explain_history_query(client, tx_app, admin, member, query: str) -> list[dict[str, Any]]:
    """Run a history request and EXPLAIN ANALYZE the page query it sent."""
    with captured_sql(tx_app) as statements:
        response = await client.get(f"/transactions?{query}", headers=member.headers)
    assert response.status_code == 200
    [(sql, params)] = [(s, p) for s, p in statements if "LATERAL" in s]
    plan = json.loads(await admin.fetchval(f"EXPLAIN (ANALYZE, FORMAT JSON) {sql}", *params))
    return list(plan_nodes(plan[0]["Plan"]))


async def test_a_deep_page_reads_no_more_entries_than_the_first(client, tx_app, admin, seeded):
    page = 10
    deep = (await all_entries(client, seeded, limit=100))[1_000 - 1]["id"]

    first = await explain_history_query(client, tx_app, admin, seeded, f"limit={page}")
    later = await explain_history_query(
        client, tx_app, admin, seeded, f"limit={page}&starting_after={deep}"
    )

    for nodes in (first, later):
        scans = [n for n in nodes if n.get("Index Name") == "entries_account_history_idx"]
        # One keyset scan (one wallet) reading limit + 1 rows (to know has_more) straight off
        # the index: no sort, no filtering, no other read of entries but the cursor's own row.
        assert len(scans) == 1
        assert scans[0]["Actual Rows"] == page + 1
        assert scans[0].get("Rows Removed by Filter", 0) == 0
        others = [n for n in nodes if n.get("Relation Name") == "entries" and n not in scans]
        assert all(n["Actual Rows"] <= 1 for n in others)
        assert not any(
            n["Node Type"] == "Sort" and n.get("Actual Rows", 0) > page + 1 for n in nodes
        )


async def test_a_balance_read_does_not_touch_entries(client, tx_settings, seeded):
    response = await client.get("/transactions/balance", headers=seeded.headers)
    assert response.json()["balances"][0]["balance"] == SEEDED_ENTRIES
    # What the route sends, on the app's kind of pool (one connection, every statement logged).
    pool = await create_pool(
        tx_settings.model_copy(update={"db_pool_size": 1, "db_max_overflow": 0}), "transactions"
    )
    statements: list[str] = []
    try:
        async with pool.acquire() as connection:
            connection.add_query_logger(lambda logged: statements.append(logged.query))
        read = await accounts.balances(Direct(pool), seeded.id)
        await asyncio.sleep(0)  # asyncpg calls its query loggers soon after, not at once
    finally:
        await pool.close()
    assert [wallet.balance for wallet in read.balances] == [SEEDED_ENTRIES]
    assert len(statements) == 1
    assert "accounts" in statements[0]
    assert "entries" not in statements[0]


async def test_the_seeded_ledger_still_checks_out(client, service_headers, seeded):
    result = await ledger_check(client, service_headers)
    assert result["ok"] is True, result["violations"]
    assert result["counts"]["entries"] >= 2 * SEEDED_ENTRIES


async def test_ids_beyond_bigint_are_refused_before_any_query(client, pair):
    alice, _ = pair
    too_big = 2**64 - 1
    entry = await client.get(f"/transactions/{too_big}", headers=alice.headers)
    page = await client.get(f"/transactions?starting_after={too_big}", headers=alice.headers)
    for response in (entry, page):
        assert response.status_code == 422
        assert response.headers["content-type"] == "application/problem+json"
