"""Statement cost by history depth: the same number of lines, with 0 to N entries before `from`.

    .venv/bin/python -m bench.statement_depth [--entries 1000000] [--lines 1000] [--requests 50]

Starts the same environment as bench.transfers (dedicated database, moto, the service under
uvicorn), seeds --entries one-cent top-ups of one wallet with SQL generate_series (as
bench.transfers_history does), then times GET /transactions/statement over periods of --lines
lines each, starting at the oldest entry, in the middle of the history and at its end,
interleaving them so that noise hits them alike: over HTTP (the whole streamed JSON body), then
PostgreSQL's own execution time of the opening balance's probe (EXPLAIN ANALYZE), the part whose
cost would grow with the history before `from` if it were a sum. Prints p50/p99 per depth and
the ratios to depth 0.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from datetime import datetime

import asyncpg
import httpx
from sqlalchemy.dialects import postgresql

from bench.transfers_history import check_ledger, seed_wallet
from bench.transfers_setup import DEFAULT_ADMIN_URL, Environment, environment, percentile
from stack.postgres import asyncpg_dsn
from transactions_microservice.statements.repository import BALANCE_BEFORE

Periods = dict[str, tuple[datetime, datetime]]
"""Per depth: the period's `from` and `to`."""


async def seed(env: Environment, entries: int, lines: int) -> tuple[int, Periods]:
    """Write `entries` top-ups to the first user's wallet; returns it and, per depth, the
    period of `lines` lines that starts after that many entries."""
    conn = await asyncpg.connect(**asyncpg_dsn(env.admin_dsn))
    try:
        wallet = await seed_wallet(conn, env, entries)

        async def nth(offset: int) -> datetime:
            instant: datetime = await conn.fetchval(
                "SELECT created_at FROM transactions.entries WHERE account_id = $1"
                " ORDER BY created_at, id OFFSET $2 LIMIT 1",
                wallet,
                offset + 1,  # after the wallet's funding top-up
            )
            return instant

        periods: Periods = {}
        for name, depth in (
            ("depth 0", 0),
            (f"depth {entries // 2:,}", entries // 2),
            (f"depth {entries - lines - 1:,}", entries - lines - 1),
        ):
            periods[name] = (await nth(depth), await nth(depth + lines))
        return wallet, periods
    finally:
        await conn.close()


async def measure(
    env: Environment, periods: Periods, lines: int, requests: int
) -> dict[str, list[float]]:
    """Time each period's statement `requests` times, interleaved, reading the whole body."""
    headers = {"Authorization": f"Bearer {env.users[0].token}"}
    timings: dict[str, list[float]] = {name: [] for name in periods}
    async with httpx.AsyncClient(base_url=env.base_url, headers=headers, timeout=120) as http:

        async def one(start: datetime, end: datetime) -> float:
            params = {"currency": "USD", "from": start.isoformat(), "to": end.isoformat()}
            began = time.perf_counter()
            response = await http.get("/transactions/statement", params=params)
            elapsed = time.perf_counter() - began
            if response.status_code != 200:
                raise SystemExit(f"statement answered {response.status_code}: {response.text}")
            return elapsed

        for name, (start, end) in periods.items():
            params = {"currency": "USD", "from": start.isoformat(), "to": end.isoformat()}
            found = len((await http.get("/transactions/statement", params=params)).json()["lines"])
            if found != lines:
                raise SystemExit(f"the period at {name} has {found} lines, not {lines}")
        for _ in range(max(1, requests // 10)):  # warm-up
            for start, end in periods.values():
                await one(start, end)
        for _ in range(requests):
            for name, (start, end) in periods.items():
                timings[name].append(await one(start, end))
    return timings


async def opening_times(
    env: Environment, wallet: int, periods: Periods, requests: int
) -> dict[str, list[float]]:
    """PostgreSQL's own execution time of each period's opening balance probe, interleaved."""
    dialect = postgresql.psycopg.dialect()  # type: ignore[no-untyped-call]
    sql = {
        name: str(
            BALANCE_BEFORE.params(account_id=wallet, start=start).compile(
                dialect=dialect, compile_kwargs={"literal_binds": True}
            )
        )
        for name, (start, _) in periods.items()
    }
    timings: dict[str, list[float]] = {name: [] for name in periods}
    conn = await asyncpg.connect(**asyncpg_dsn(env.app_dsn))
    try:
        for _ in range(requests):
            for name, query in sql.items():
                plan = json.loads(await conn.fetchval(f"EXPLAIN (ANALYZE, FORMAT JSON) {query}"))
                timings[name].append(plan[0]["Execution Time"] / 1000)
    finally:
        await conn.close()
    return timings


def main() -> None:
    """Seed, measure, print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--admin-url", default=DEFAULT_ADMIN_URL)
    parser.add_argument("--database", default="micropay_bench_statement")
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--lines", type=int, default=1_000)
    parser.add_argument("--requests", type=int, default=50)
    args = parser.parse_args()
    if args.entries < 2 * args.lines + 2:
        parser.error("--entries must be at least twice --lines, plus 2")

    with environment(
        admin_url=args.admin_url, database=args.database, users=1, workers=1, pool_size=5
    ) as env:
        wallet, periods = asyncio.run(seed(env, args.entries, args.lines))
        timings = asyncio.run(measure(env, periods, args.lines, args.requests))
        database = asyncio.run(opening_times(env, wallet, periods, args.requests))
        consistent, check_seconds = asyncio.run(check_ledger(env))

    print()
    print(
        f"{args.entries:,} entries in one wallet, statements of {args.lines:,} lines, "
        f"{args.requests} requests each; ledger check: {'ok' if consistent else 'FAILED'} "
        f"in {check_seconds:.1f}s"
    )
    print()
    print(
        "| entries before `from` | HTTP p50 ms | HTTP p99 ms | p50 / depth 0 "
        "| opening SQL p50 ms | opening SQL p99 ms | p50 / depth 0 |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    first = percentile(sorted(timings["depth 0"]), 0.5)
    first_sql = percentile(sorted(database["depth 0"]), 0.5)
    for name, values in timings.items():
        ordered = sorted(values)
        sql = sorted(database[name])
        print(
            f"| {name.removeprefix('depth ')} | {percentile(ordered, 0.5) * 1000:.2f} "
            f"| {percentile(ordered, 0.99) * 1000:.2f} "
            f"| {percentile(ordered, 0.5) / first:.2f} "
            f"| {percentile(sql, 0.5) * 1000:.3f} | {percentile(sql, 0.99) * 1000:.3f} "
            f"| {percentile(sql, 0.5) / first_sql:.2f} |"
        )


if __name__ == "__main__":
    main()
