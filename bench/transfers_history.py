"""History-page latency by depth: page 1 vs page 1,000 of a wallet with 1M ledger entries.

    .venv/bin/python -m bench.transfers_history [--entries 1000000] [--requests 500]

Starts the same environment as bench.transfers (dedicated database, moto, the service
under uvicorn), seeds --entries one-cent top-ups of one wallet with SQL generate_series (from a
system account of their own, so the ledger's invariants hold), then times GET
/transactions?limit=10 at page 1, page 1,000 and a page near the end, interleaving the pages
so that noise hits them alike, over HTTP and then PostgreSQL's own execution time of the
same query (EXPLAIN ANALYZE). Prints p50/p99 per page and the ratios to page 1.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time

import asyncpg
from sqlalchemy.dialects import postgresql

from bench.transfers_setup import (
    DEFAULT_ADMIN_URL,
    DEFAULT_DATABASE,
    Connection,
    Environment,
    environment,
    percentile,
)
from stack.postgres import asyncpg_dsn
from transactions_microservice.ledger.repository import HistoryFilter, history_statement

PAGE_SIZE = 10

SEED = """
WITH t AS (
    INSERT INTO transactions.ledger_transactions (id, type, reference, created_at)
    SELECT gen_random_uuid(), 'top_up', 'bench-seed-' || g,
           now() - make_interval(secs => ($1::int - g) / 1000000.0)
    FROM generate_series(1, $1::int) AS g
    RETURNING id, created_at
)
INSERT INTO transactions.entries
    (transaction_id, account_id, type, amount, currency, balance_after, created_at)
SELECT t.id, x.account_id, 'top_up', x.sign, 'USD', x.start + x.sign * t.n, t.created_at
FROM (SELECT id, created_at, row_number() OVER (ORDER BY created_at) AS n FROM t) AS t
CROSS JOIN (VALUES ($2::bigint, 1, $4::bigint), ($3::bigint, -1, 0::bigint))
    AS x(account_id, sign, start)
ORDER BY t.n, x.sign DESC
"""


async def seed_wallet(conn: asyncpg.Connection, env: Environment, entries: int) -> int:
    """Write `entries` one-cent top-ups to the first user's wallet, from a system account of
    their own, just before now; returns the wallet's id."""
    wallet, balance = await conn.fetchrow(
        "SELECT id, balance FROM transactions.accounts WHERE user_id = $1",
        env.users[0].user_id,
    )
    source = await conn.fetchval(
        "INSERT INTO transactions.accounts (kind, system_code, currency)"
        " VALUES ('system', 'bench_seed', 'USD') RETURNING id"
    )
    started = time.perf_counter()
    # One microsecond apart, just before now: newer than the wallet's funding entry.
    await conn.execute(SEED, entries, wallet, source, balance)
    await conn.execute(
        "UPDATE transactions.accounts SET balance = balance + $2 WHERE id = $1",
        wallet,
        entries,
    )
    await conn.execute(
        "UPDATE transactions.accounts SET balance = -$2::bigint WHERE id = $1", source, entries
    )
    await conn.execute("VACUUM ANALYZE transactions.entries")
    await conn.execute("VACUUM ANALYZE transactions.ledger_transactions")
    print(
        f"seeded {entries} entries in {time.perf_counter() - started:.0f}s",
        file=sys.stderr,
    )
    return int(wallet)


async def seed(env: Environment, entries: int) -> tuple[int, list[int]]:
    """Write `entries` top-ups to the first user's wallet; returns it and page cursors."""
    conn = await asyncpg.connect(**asyncpg_dsn(env.admin_dsn))
    try:
        wallet = await seed_wallet(conn, env, entries)
        cursors = [
            int(
                await conn.fetchval(
                    "SELECT id FROM transactions.entries WHERE account_id = $1"
                    " ORDER BY created_at DESC, id DESC OFFSET $2 LIMIT 1",
                    wallet,
                    offset,
                )
            )
            for offset in (PAGE_SIZE * 999 - 1, entries - PAGE_SIZE - 1)
        ]
        return wallet, cursors
    finally:
        await conn.close()


async def check_ledger(env: Environment) -> tuple[bool, float]:
    """Run the service's invariant check over the seeded ledger: (ok, seconds)."""
    connection = await Connection.open(env.base_url)
    try:
        started = time.perf_counter()
        status, body = await connection.request(
            "GET", "/internal/ledger/check", {"Authorization": f"Bearer {env.service_token}"}
        )
        elapsed = time.perf_counter() - started
    finally:
        await connection.close()
    return status == 200 and json.loads(body)["ok"] is True, elapsed


async def database_times(
    env: Environment, cursors: dict[str, int | None], requests: int
) -> dict[str, list[float]]:
    """PostgreSQL's own execution time of each page's query (EXPLAIN ANALYZE), interleaved."""
    dialect = postgresql.psycopg.dialect()  # type: ignore[no-untyped-call]
    sql: dict[str, str] = {}
    for name, cursor in cursors.items():
        statement, values = history_statement(
            HistoryFilter(user_id=env.users[0].user_id),
            limit=PAGE_SIZE + 1,
            starting_after=cursor,
        )
        sql[name] = str(
            statement.params(values).compile(
                dialect=dialect, compile_kwargs={"literal_binds": True}
            )
        )
    timings: dict[str, list[float]] = {name: [] for name in cursors}
    conn = await asyncpg.connect(**asyncpg_dsn(env.app_dsn))
    try:
        for _ in range(requests):
            for name, query in sql.items():
                plan = json.loads(await conn.fetchval(f"EXPLAIN (ANALYZE, FORMAT JSON) {query}"))
                timings[name].append(plan[0]["Execution Time"] / 1000)
    finally:
        await conn.close()
    return timings


async def measure(env: Environment, pages: dict[str, str], requests: int) -> dict[str, list[float]]:
    """Time each page's request `requests` times, interleaved."""
    user = env.users[0]
    headers = {"Authorization": f"Bearer {user.token}"}
    connection = await Connection.open(env.base_url)
    timings: dict[str, list[float]] = {name: [] for name in pages}
    try:
        for _ in range(requests // 10):  # warm-up
            for path in pages.values():
                await connection.request("GET", path, headers)
        for _ in range(requests):
            for name, path in pages.items():
                started = time.perf_counter()
                status, _ = await connection.request("GET", path, headers)
                timings[name].append(time.perf_counter() - started)
                if status != 200:
                    raise SystemExit(f"{path} answered {status}")
    finally:
        await connection.close()
    return timings


def main() -> None:
    """Seed, measure, print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--admin-url", default=DEFAULT_ADMIN_URL)
    parser.add_argument("--database", default=DEFAULT_DATABASE)
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--requests", type=int, default=500)
    args = parser.parse_args()

    with environment(
        admin_url=args.admin_url, database=args.database, users=2, workers=1, pool_size=5
    ) as env:
        _, (page_1000, last_page) = asyncio.run(seed(env, args.entries))
        last_name = f"page {args.entries // PAGE_SIZE:,} (last)"
        cursors = {"page 1": None, "page 1,000": page_1000, last_name: last_page}
        pages = {
            name: f"/transactions?limit={PAGE_SIZE}"
            + (f"&starting_after={cursor}" if cursor is not None else "")
            for name, cursor in cursors.items()
        }
        timings = asyncio.run(measure(env, pages, args.requests))
        database = asyncio.run(database_times(env, cursors, args.requests))
        consistent, check_seconds = asyncio.run(check_ledger(env))

    print()
    print(
        f"{args.entries:,} entries in one wallet, {PAGE_SIZE} per page, {args.requests} requests "
        f"each; ledger check: {'ok' if consistent else 'FAILED'} in {check_seconds:.1f}s"
    )
    print()
    print(
        "| page | HTTP p50 ms | HTTP p99 ms | p50 / page 1 "
        "| SQL p50 ms | SQL p99 ms | p50 / page 1 |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    first = percentile(sorted(timings["page 1"]), 0.5)
    first_sql = percentile(sorted(database["page 1"]), 0.5)
    for name, values in timings.items():
        ordered = sorted(values)
        sql = sorted(database[name])
        print(
            f"| {name} | {percentile(ordered, 0.5) * 1000:.2f} "
            f"| {percentile(ordered, 0.99) * 1000:.2f} "
            f"| {percentile(ordered, 0.5) / first:.2f} "
            f"| {percentile(sql, 0.5) * 1000:.3f} | {percentile(sql, 0.99) * 1000:.3f} "
            f"| {percentile(sql, 0.5) / first_sql:.2f} |"
        )


if __name__ == "__main__":
    main()
