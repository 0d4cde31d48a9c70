"""Transfers per second through the service vs pgbench running the same SQL transaction.

    .venv/bin/python -m bench.transfers [--concurrency 1,4,16,32] [--duration 10] [--rounds 3]

Starts moto and the transactions service (uvicorn, its own process) on a dedicated database
of the PostgreSQL in --admin-url (it is dropped and recreated), registers and funds --users
users, then at each concurrency level drives authenticated POST /transactions/transfers
between random pairs of them for --duration seconds, and right after runs pgbench with
bench/transfer.pgbench (the statements the endpoint sends, in one transaction) at the same
number of clients for the same time; --rounds times over, alternating. Prints a markdown table
of medians: rate, p50 and p99 latency of both, the service's CPU per transfer, and the ratio
service/pgbench with its range over the rounds. After each pair it also times authenticated
GET /transactions/balance for --balance-seconds (one short read transaction: what any request
costs the service before it does any work of its own). Run by hand; never part of
`make test`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from statistics import median
from typing import Any

import asyncpg

from bench.transfers_setup import (
    DEFAULT_ADMIN_URL,
    DEFAULT_DATABASE,
    Connection,
    Environment,
    environment,
    percentile,
    process_tree_cpu,
)
from micropay_common.services import SERVICES, ServiceName
from stack.postgres import asyncpg_dsn

PGBENCH_SCRIPT = Path(__file__).with_name("transfer.pgbench")


@dataclass
class Result:
    """One measured run."""

    rate: float
    p50_ms: float
    p99_ms: float
    count: int
    errors: int
    cpu_ms: float = float("nan")
    """Server CPU (all its processes) per completed request, in milliseconds."""


def summarise(latencies: list[float], seconds: float, errors: int) -> Result:
    ordered = sorted(latencies)
    return Result(
        rate=len(ordered) / seconds,
        p50_ms=percentile(ordered, 0.50) * 1000,
        p99_ms=percentile(ordered, 0.99) * 1000,
        count=len(ordered),
        errors=errors,
    )


Request = tuple[str, str, dict[str, str], Any, int]
"""method, path, headers, JSON body (or None) and the status that counts as success."""


def transfer_request(env: Environment, rng: random.Random) -> Request:
    """A transfer between a random pair, under a fresh Idempotency-Key."""
    sender, recipient = rng.sample(env.users, 2)
    body = {"to_email": recipient.email, "amount": rng.randint(1, 1000), "currency": "USD"}
    headers = {"Authorization": f"Bearer {sender.token}", "Idempotency-Key": uuid.uuid4().hex}
    return "POST", "/transactions/transfers", headers, body, 201


def balance_request(env: Environment, rng: random.Random) -> Request:
    """A random user's balance: one short read transaction, the service's per-request floor."""
    user = rng.choice(env.users)
    return "GET", "/transactions/balance", {"Authorization": f"Bearer {user.token}"}, None, 200


async def drive_service(
    env: Environment,
    concurrency: int,
    seconds: float,
    rng: random.Random,
    make_request: Callable[[Environment, random.Random], Request] = transfer_request,
) -> Result:
    """`concurrency` keep-alive connections sending requests back to back for `seconds`."""
    latencies: list[float] = []
    errors: list[str] = []
    deadline = time.perf_counter() + seconds

    async def worker() -> None:
        connection = await Connection.open(env.base_url)
        try:
            while time.perf_counter() < deadline:
                method, path, headers, body, expected = make_request(env, rng)
                started = time.perf_counter()
                status, payload = await connection.request(method, path, headers, body)
                if status == expected:
                    latencies.append(time.perf_counter() - started)
                else:
                    errors.append(f"{status} {payload[:200]!r}")
        finally:
            await connection.close()

    cpu_before = process_tree_cpu(env.app_pid)
    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    if errors:
        print(f"  {len(errors)} failed requests, e.g. {errors[0]}", file=sys.stderr)
    result = summarise(latencies, elapsed, len(errors))
    if latencies:
        result.cpu_ms = (process_tree_cpu(env.app_pid) - cpu_before) / len(latencies) * 1000
    return result


def run_pgbench(
    pgbench: str, env: Environment, concurrency: int, seconds: float, users: int
) -> Result:
    """pgbench with the transfer script at `concurrency` clients for `seconds`."""
    dsn = asyncpg_dsn(env.app_dsn)
    with tempfile.TemporaryDirectory() as logs:
        command = [
            pgbench,
            "-h",
            str(dsn["host"]),
            "-p",
            str(dsn.get("port", 5432)),
            "-U",
            str(dsn["user"]),
            "-n",
            "-M",
            "prepared",
            "-f",
            str(PGBENCH_SCRIPT),
            "-D",
            f"users={users}",
            "-c",
            str(concurrency),
            "-j",
            str(min(concurrency, 2)),
            "-T",
            str(round(seconds)),
            "-l",
            "--log-prefix",
            f"{logs}/pgbench",
            str(dsn["database"]),
        ]
        done = subprocess.run(command, capture_output=True, text=True, check=False)  # noqa: S603
        if done.returncode != 0:
            raise SystemExit(f"pgbench failed:\n{done.stdout}\n{done.stderr}")
        match = re.search(r"tps = ([0-9.]+) \(without initial connection time\)", done.stdout)
        failed = re.search(r"number of failed transactions: (\d+)", done.stdout)
        latencies = []
        for log in Path(logs).glob("pgbench*"):
            for line in log.read_text().splitlines():
                fields = line.split()
                latencies.append(int(fields[2]) / 1_000_000)
    if match is None:
        raise SystemExit(f"no tps in pgbench's output:\n{done.stdout}")
    ordered = sorted(latencies)
    return Result(
        rate=float(match.group(1)),
        p50_ms=percentile(ordered, 0.50) * 1000,
        p99_ms=percentile(ordered, 0.99) * 1000,
        count=len(ordered),
        errors=int(failed.group(1)) if failed else 0,
    )


async def write_bench_users(env: Environment) -> None:
    """The index → user table pgbench picks its random pair from."""
    conn = await asyncpg.connect(**asyncpg_dsn(env.admin_dsn))
    try:
        await conn.execute(
            "DROP TABLE IF EXISTS bench_users;"
            "CREATE TABLE bench_users (i int PRIMARY KEY, user_id text NOT NULL,"
            " email text NOT NULL);"
            f"GRANT SELECT ON bench_users TO {SERVICES[ServiceName.TRANSACTIONS].role}"
        )
        await conn.executemany(
            "INSERT INTO bench_users VALUES ($1, $2, $3)",
            [(user.index, user.user_id, user.email) for user in env.users],
        )
    finally:
        await conn.close()


def ledger_is_consistent(env: Environment) -> bool:
    """The service's own invariant check over everything both runs wrote."""

    async def check() -> bool:
        connection = await Connection.open(env.base_url)
        try:
            status, body = await connection.request(
                "GET",
                "/internal/ledger/check",
                {"Authorization": f"Bearer {env.service_token}"},
            )
        finally:
            await connection.close()
        return status == 200 and bool(json.loads(body)["ok"])

    return asyncio.run(check())


def _median_of(results: list[Result], field: str, spec: str) -> str:
    return format(median(getattr(r, field) for r in results), spec) if results else "-"


def main() -> None:
    """Parse the options, run every level in rounds, print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--admin-url", default=DEFAULT_ADMIN_URL)
    parser.add_argument("--database", default=DEFAULT_DATABASE)
    parser.add_argument("--users", type=int, default=100)
    parser.add_argument("--concurrency", default="1,4,16,32")
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--rounds", type=int, default=3, help="service and pgbench alternate")
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--workers", type=int, default=1, help="uvicorn worker processes")
    parser.add_argument("--pool-size", type=int, default=20, help="DB_POOL_SIZE per worker")
    parser.add_argument("--pgbench", default=shutil.which("pgbench") or "pgbench")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--balance-seconds",
        type=float,
        default=5.0,
        help="also time GET /transactions/balance this long per round and level (0: skip)",
    )
    args = parser.parse_args()
    levels = [int(level) for level in args.concurrency.split(",")]
    rng = random.Random(args.seed)  # noqa: S311 - picks load, not secrets

    runs: dict[int, list[tuple[Result, Result]]] = {level: [] for level in levels}
    reads: dict[int, list[Result]] = {level: [] for level in levels}
    with environment(
        admin_url=args.admin_url,
        database=args.database,
        users=args.users,
        workers=args.workers,
        pool_size=args.pool_size,
    ) as env:
        asyncio.run(write_bench_users(env))
        print(f"warming up for {args.warmup:g}s …", file=sys.stderr)
        asyncio.run(drive_service(env, max(levels), args.warmup, rng))
        run_pgbench(args.pgbench, env, max(levels), args.warmup, args.users)
        for round_number in range(1, args.rounds + 1):
            for level in levels:
                print(f"round {round_number}, {level} clients …", file=sys.stderr)
                service = asyncio.run(drive_service(env, level, args.duration, rng))
                database = run_pgbench(args.pgbench, env, level, args.duration, args.users)
                runs[level].append((service, database))
                if args.balance_seconds > 0:
                    reads[level].append(
                        asyncio.run(
                            drive_service(env, level, args.balance_seconds, rng, balance_request)
                        )
                    )
        consistent = ledger_is_consistent(env)

    print()
    print(
        f"{args.users} users, {args.rounds} rounds of {args.duration:g} s per side and level "
        f"(medians), {args.workers} uvicorn worker(s), pool {args.pool_size}; "
        f"ledger check after all runs: {'ok' if consistent else 'FAILED'}"
    )
    print()
    print(
        "| clients | service transfers/s | p50 ms | p99 ms | server CPU ms/transfer "
        "| pgbench tps | p50 ms | p99 ms | service / pgbench (range) "
        "| balance reads/s | server CPU ms/read |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for level, pairs in runs.items():
        services = [service for service, _ in pairs]
        databases = [database for _, database in pairs]
        ratios = sorted(service.rate / database.rate for service, database in pairs)
        print(
            f"| {level} | {median(s.rate for s in services):.0f} "
            f"| {median(s.p50_ms for s in services):.1f} "
            f"| {median(s.p99_ms for s in services):.1f} "
            f"| {median(s.cpu_ms for s in services):.1f} "
            f"| {median(d.rate for d in databases):.0f} "
            f"| {median(d.p50_ms for d in databases):.1f} "
            f"| {median(d.p99_ms for d in databases):.1f} "
            f"| {median(ratios):.2f} ({ratios[0]:.2f} to {ratios[-1]:.2f}) "
            f"| {_median_of(reads[level], 'rate', '.0f')} "
            f"| {_median_of(reads[level], 'cpu_ms', '.1f')} |"
        )
    failed = sum(s.errors + d.errors for pairs in runs.values() for s, d in pairs)
    if failed:
        print(f"\n{failed} requests or transactions failed (see stderr)")


if __name__ == "__main__":
    main()
