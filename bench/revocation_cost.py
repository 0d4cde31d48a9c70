"""What the logout check costs per request: one service from two source trees, side by side.

Starts PostgreSQL (DATABASE_URL or the embedded server; a database `micropay_bench_<pid>` at this
checkout's latest revision, dropped at the end), a moto server, and the transactions service
from each source tree under uvicorn (one worker each, LOG_LEVEL=WARNING, its jobs parked): this
checkout and the one given with `--before` (say a `git worktree add` of the commit before the
deny-set). Signs a user in at moto, then alternates, for `--rounds` rounds of `--seconds`,
`GET /transactions/balance` (token check from the verifier's cache and, after, the deny-set;
a session and one read) and `GET /health/live` on each build, and prints the medians and the
ratio of the builds. Then times `TokenVerifier.verify` of a cached token in this process,
without a deny-set and with one holding `--keys` revoked sign-ins. Run by hand from the root:

    .venv/bin/python -m bench.revocation_cost --before /path/to/base/checkout
    .venv/bin/python -m bench.revocation_cost --before ../base --rounds 5 --seconds 5
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import boto3

from bench.auth_verify import DATA_DIR, ROOT, _wait, measure, spawn
from micropay_common.revocation import DenySet
from micropay_common.security import JwksCache, TokenVerifier
from stack.bootstrap import AwsResources, admin_log_in, bootstrap_aws, create_confirmed_user
from stack.launcher import free_port
from stack.postgres import drop_database, prepare_database, start_postgres

PATHS = ("/health/live", "/transactions/balance")


async def measure_builds(
    ports: dict[str, int], token: str, rounds: int, seconds: float, connections: int
) -> dict[tuple[str, str], list[float]]:
    """Alternate builds and paths, `rounds` times each, after a short warm-up."""
    for port in ports.values():
        for path in PATHS:
            await measure(port, path, token, 1.0, connections)
    results: dict[tuple[str, str], list[float]] = {
        (build, path): [] for build in ports for path in PATHS
    }
    for round_number in range(1, rounds + 1):
        for (build, path), rates in results.items():
            rate = await measure(ports[build], path, token, seconds, connections)
            rates.append(rate)
            print(f"round {round_number}: {build:<6} {path:<22} {rate:8.0f} req/s", flush=True)
    return results


async def verify_rates(aws: AwsResources, token: str, keys: int, calls: int) -> dict[str, float]:
    """Cached `TokenVerifier.verify` calls per second, without and with a deny-set."""
    deny_set = DenySet(max_staleness_seconds=3600)
    for number in range(keys):
        deny_set.add(f"revoked-{number}", time.time() + 3600)
    deny_set.confirm(deny_set.clock())
    rates: dict[str, float] = {}
    for name, deny in (("without deny-set", None), (f"deny-set of {keys}", deny_set)):
        verifier = TokenVerifier(
            issuer=aws.issuer,
            client_id=aws.client_id,
            jwks=JwksCache(aws.jwks_url, cooldown_seconds=60),
            deny_set=deny,
        )
        try:
            await verifier.verify(token)  # the RSA check, once; every call below is cached
            best = 0.0
            for _ in range(5):
                started = time.perf_counter()
                for _ in range(calls):
                    await verifier.verify(token)
                best = max(best, calls / (time.perf_counter() - started))
            rates[name] = best
        finally:
            await verifier.aclose()
    return rates


def service_env(aws: AwsResources, database_url: str, moto_url: str, tree: Path) -> dict[str, Any]:
    """The transactions service's environment, its peers nowhere and its jobs parked."""
    nowhere = f"http://127.0.0.1:{free_port()}"
    return {
        **os.environ,
        **aws.service_env("transactions"),
        "PYTHONPATH": f"{tree / 'common'}{os.pathsep}{tree}",
        "DATABASE_URL": database_url,
        "AWS_ENDPOINT_URL": moto_url,
        "LOG_LEVEL": "WARNING",
        "AUTH_URL": nowhere,
        "PAYMENT_URL": nowhere,
        "NOTIFICATIONS_URL": nowhere,
        "OUTBOX_POLL_INTERVAL_SECONDS": "3600",
        "HOLD_SWEEP_INTERVAL_SECONDS": "3600",
    }


def run(args: argparse.Namespace) -> None:
    """Start the pieces, sign in, measure, print, stop."""
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "test")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "test")
    trees = {"before": Path(args.before).resolve(), "after": ROOT}
    server = start_postgres(DATA_DIR / "postgres", os.environ.get("DATABASE_URL"))
    database = f"micropay_bench_{os.getpid()}"
    urls = asyncio.run(
        prepare_database(server, database, DATA_DIR / "role-passwords.json", recreate=True)
    )
    logs = DATA_DIR / "bench-logs"
    logs.mkdir(parents=True, exist_ok=True)
    processes = []
    try:
        moto_port = free_port()
        moto = spawn(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(moto_port)],
            logs / "moto.log",
            dict(os.environ),
        )
        processes.append(moto)
        moto_url = f"http://127.0.0.1:{moto_port}"
        _wait(f"{moto_url}/moto-api/", moto)
        aws = bootstrap_aws(endpoint_url=moto_url)
        ports: dict[str, int] = {}
        for build, tree in trees.items():
            port = ports[build] = free_port()
            command = [
                sys.executable, "-m", "uvicorn", "transactions_microservice.main:app",
                "--host", "127.0.0.1", "--port", str(port), "--no-access-log",
            ]  # fmt: skip
            env = service_env(aws, urls["transactions"], moto_url, tree)
            process = spawn(command, logs / f"transactions-{build}.log", env)
            processes.append(process)
            _wait(f"http://127.0.0.1:{port}/health/ready", process)
        cognito = boto3.client("cognito-idp", region_name=aws.region, endpoint_url=moto_url)
        email, password = f"bench-{uuid.uuid4().hex[:8]}@example.com", "Bench-Password-1"
        create_confirmed_user(cognito, aws.user_pool_id, email, password)
        token = str(admin_log_in(cognito, aws, email, password)["AccessToken"])
        results = asyncio.run(
            measure_builds(ports, token, args.rounds, args.seconds, args.connections)
        )
        medians = {key: statistics.median(rates) for key, rates in results.items()}
        print()
        for (build, path), rate in medians.items():
            print(f"median {build:<6} GET {path:<22}: {rate:8.0f} req/s")
        for path in PATHS:
            before, after = medians[("before", path)], medians[("after", path)]
            print(
                f"after/before {path:<22}: {after / before:6.3f}"
                f" ({1000 / after - 1000 / before:+.3f} ms per request)"
            )
        rates = asyncio.run(verify_rates(aws, token, args.keys, args.calls))
        print()
        for name, rate in rates.items():
            print(f"TokenVerifier.verify, cached, {name:<18}: {rate:10.0f} calls/s")
        without, with_set = rates.values()
        print(f"deny-set check: {1e6 / with_set - 1e6 / without:+.3f} µs per call")
    finally:
        for process in reversed(processes):
            process.terminate()
            try:
                process.wait(timeout=10)
            except Exception:
                process.kill()
        asyncio.run(drop_database(server, database))


def main() -> None:
    """Command line."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--before", required=True, help="the checkout to compare against")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per build and path (3)")
    parser.add_argument("--seconds", type=float, default=5.0, help="length of a round (5)")
    parser.add_argument("--connections", type=int, default=16, help="keep-alive connections (16)")
    parser.add_argument("--keys", type=int, default=10_000, help="revoked keys in the set (10000)")
    parser.add_argument("--calls", type=int, default=200_000, help="verify calls per pass")
    run(parser.parse_args())


if __name__ == "__main__":
    main()
