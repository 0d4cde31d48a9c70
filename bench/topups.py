"""Top-ups per second, and latency from POST /payments to the credited balance being visible.

Starts a whole local stack on free ports (the launcher behind `make run`: embedded PostgreSQL,
moto, localstripe, the four services; no gateway) in a temporary directory, creates users in
the Cognito stand-in, then lets `--concurrency` workers top up their own wallet by card with
`pm_card_visa`. One top-up is timed from sending POST /payments until GET
/transactions/balance shows the credit (polled every `--poll` seconds). The payment service's
own histogram `micropay_stripe_request_duration_seconds` (from /metrics) gives the time spent
waiting on the Stripe stand-in, reported beside the end-to-end time. Bounded: `--topups`
top-ups or `--max-seconds`, whichever comes first; everything it started is stopped at the end.

    .venv/bin/python bench/topups.py --topups 300 --concurrency 8
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import httpx
from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from stack.bootstrap import admin_log_in, create_confirmed_user  # noqa: E402
from stack.launcher import LOCAL_AWS_CREDENTIALS, Stack, StackConfig  # noqa: E402
from stack.postgres import connect  # noqa: E402
from stack.processes import PrefixedOutput  # noqa: E402

STRIPE_METRIC = "micropay_stripe_request_duration_seconds"


@dataclass
class Samples:
    """What the workers measured."""

    end_to_end: list[float] = field(default_factory=list)
    post: list[float] = field(default_factory=list)
    after_answer: list[float] = field(default_factory=list)
    """From the POST's answer (Stripe's answer, committed with its event) to a visible credit."""
    failures: list[str] = field(default_factory=list)


def create_users(stack: Stack, count: int) -> list[str]:
    """Confirmed pool users, logged in; returns their access tokens."""
    aws = stack.aws
    assert aws is not None
    cognito = boto3.client(
        "cognito-idp",
        region_name=aws.region,
        endpoint_url=aws.endpoint_url,
        **{key.lower(): value for key, value in LOCAL_AWS_CREDENTIALS.items()},
    )
    tokens = []
    for _ in range(count):
        name = f"bench-{uuid.uuid4().hex[:12]}@example.com"
        password = f"Pw-{uuid.uuid4().hex}A1"
        create_confirmed_user(cognito, aws.user_pool_id, name, password)
        tokens.append(admin_log_in(cognito, aws, name, password)["AccessToken"])
    return tokens


async def stripe_seconds(payments: httpx.AsyncClient) -> tuple[float, float]:
    """Total seconds and number of PaymentIntent creations, from the service's /metrics."""
    text = (await payments.get("/metrics")).text
    total = count = 0.0
    for family in text_string_to_metric_families(text):
        if family.name != STRIPE_METRIC:
            continue
        for sample in family.samples:
            if sample.labels.get("operation") != "create_payment_intent":
                continue
            if sample.name.endswith("_sum"):
                total += sample.value
            elif sample.name.endswith("_count"):
                count += sample.value
    return total, count


async def balance(transactions: httpx.AsyncClient, token: str) -> int:
    """The user's available USD balance."""
    response = await transactions.get(
        "/transactions/balance", headers={"Authorization": f"Bearer {token}"}
    )
    response.raise_for_status()
    for wallet in response.json()["balances"]:
        if wallet["currency"] == "USD":
            return int(wallet["available"])
    return 0


async def worker(
    token: str,
    payments: httpx.AsyncClient,
    transactions: httpx.AsyncClient,
    tickets: asyncio.Queue[int],
    samples: Samples,
    poll: float,
    deadline: float,
) -> None:
    """Top up one user's wallet again and again, each time until the credit is visible."""
    expected = await balance(transactions, token)
    headers = {"Authorization": f"Bearer {token}"}
    while time.monotonic() < deadline:
        try:
            amount = tickets.get_nowait()
        except asyncio.QueueEmpty:
            return
        started = time.perf_counter()
        response = await payments.post(
            "/payments",
            json={"amount": amount, "currency": "USD", "payment_method": "pm_card_visa"},
            headers={**headers, "Idempotency-Key": str(uuid.uuid4())},
        )
        answered = time.perf_counter()
        if response.status_code != 201 or response.json()["status"] != "succeeded":
            samples.failures.append(f"{response.status_code} {response.text[:200]}")
            continue
        expected += amount
        while await balance(transactions, token) < expected:
            if time.monotonic() > deadline:
                samples.failures.append("credit not visible before the deadline")
                return
            await asyncio.sleep(poll)
        visible = time.perf_counter()
        samples.end_to_end.append(visible - started)
        samples.post.append(answered - started)
        samples.after_answer.append(visible - answered)


async def relay_delays(stack: Stack) -> dict[str, dict[str, float]]:
    """p50/p99 of commit-to-delivery of `payment.succeeded`, per consumer, from the outbox."""
    assert stack.postgres is not None
    conn = await connect(stack.postgres.url_for(stack.config.database_name))
    try:
        rows = await conn.fetch(
            "SELECT consumer, extract(epoch FROM delivered_at - created_at) AS delay "
            "FROM payments.outbox WHERE event_type = 'payment.succeeded' "
            "AND delivered_at IS NOT NULL"
        )
    finally:
        await conn.close()
    delays: dict[str, list[float]] = {}
    for row in rows:
        delays.setdefault(row["consumer"], []).append(float(row["delay"]))
    return {
        consumer: {
            "p50": round(percentile(values, 0.5) * 1000, 1),
            "p99": round(percentile(values, 0.99) * 1000, 1),
        }
        for consumer, values in delays.items()
    }


def percentile(values: list[float], fraction: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    index = max(0, min(len(ordered) - 1, round(fraction * len(ordered) + 0.5) - 1))
    return ordered[index]


async def run_load(stack: Stack, tokens: list[str], args: argparse.Namespace) -> dict[str, Any]:
    """Warm up, then measure `args.topups` top-ups."""
    urls = stack.service_urls
    limits = httpx.Limits(max_connections=args.concurrency * 2)
    async with (
        httpx.AsyncClient(base_url=urls["payment"], timeout=30, limits=limits) as payments,
        httpx.AsyncClient(base_url=urls["transactions"], timeout=30, limits=limits) as tx,
    ):
        warm = Samples()
        warm_tickets: asyncio.Queue[int] = asyncio.Queue()
        for _ in range(args.concurrency * 2):
            warm_tickets.put_nowait(100)
        deadline = time.monotonic() + args.max_seconds
        await asyncio.gather(
            *(worker(t, payments, tx, warm_tickets, warm, args.poll, deadline) for t in tokens)
        )
        before_seconds, before_count = await stripe_seconds(payments)
        samples = Samples()
        tickets: asyncio.Queue[int] = asyncio.Queue()
        for index in range(args.topups):
            tickets.put_nowait(500 + index % 500)
        started = time.perf_counter()
        deadline = time.monotonic() + args.max_seconds
        await asyncio.gather(
            *(worker(t, payments, tx, tickets, samples, args.poll, deadline) for t in tokens)
        )
        elapsed = time.perf_counter() - started
        after_seconds, after_count = await stripe_seconds(payments)
    relay = await relay_delays(stack)
    done = len(samples.end_to_end)
    stripe_calls = after_count - before_count
    stripe_mean = (after_seconds - before_seconds) / stripe_calls if stripe_calls else 0.0
    e2e_mean = statistics.fmean(samples.end_to_end) if done else 0.0
    post_mean = statistics.fmean(samples.post) if done else 0.0
    return {
        "topups": done,
        "failures": len(samples.failures),
        "first_failures": samples.failures[:3],
        "concurrency": args.concurrency,
        "seconds": round(elapsed, 2),
        "topups_per_second": round(done / elapsed, 1) if elapsed else 0.0,
        "after_answer_ms": {
            "p50": round(percentile(samples.after_answer, 0.50) * 1000, 1),
            "p99": round(percentile(samples.after_answer, 0.99) * 1000, 1),
        },
        "end_to_end_ms": {
            "p50": round(percentile(samples.end_to_end, 0.50) * 1000, 1),
            "p99": round(percentile(samples.end_to_end, 0.99) * 1000, 1),
            "mean": round(e2e_mean * 1000, 1),
        },
        "post_payments_ms": {
            "p50": round(percentile(samples.post, 0.50) * 1000, 1),
            "p99": round(percentile(samples.post, 0.99) * 1000, 1),
            "mean": round(post_mean * 1000, 1),
        },
        "stripe_wait_ms_mean": round(stripe_mean * 1000, 1),
        "outbox_to_transactions_ms": relay.get("transactions"),
        "outbox_to_notifications_ms": relay.get("notifications"),
        "stripe_share_of_post": round(stripe_mean / post_mean, 3) if post_mean else None,
        "stripe_share_of_end_to_end": round(stripe_mean / e2e_mean, 3) if e2e_mean else None,
    }


def main(argv: list[str] | None = None) -> None:
    """Command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--topups", type=int, default=300, help="measured top-ups (300)")
    parser.add_argument("--concurrency", type=int, default=8, help="workers, one user each (8)")
    parser.add_argument("--poll", type=float, default=0.01, help="balance poll interval (0.01 s)")
    parser.add_argument("--max-seconds", type=float, default=180.0, help="stop after (180 s)")
    parser.add_argument(
        "--outbox-poll",
        type=float,
        default=None,
        help="OUTBOX_POLL_INTERVAL_SECONDS of the services (their default, 0.5 s, when unset)",
    )
    args = parser.parse_args(argv)

    extra = {"LOG_LEVEL": "WARNING"}
    if args.outbox_poll is not None:
        extra["OUTBOX_POLL_INTERVAL_SECONDS"] = str(args.outbox_poll)
    with tempfile.TemporaryDirectory(prefix="micropay-bench-") as tmp:
        config = StackConfig.with_free_ports(
            data_dir=Path(tmp),
            gateway=False,
            log_level="WARNING",
            service_extra_env=extra,
            startup_timeout=120.0,
        )
        stack = Stack(config, output=PrefixedOutput(stream=sys.stderr))
        stack.start()
        try:
            tokens = create_users(stack, args.concurrency)
            result = asyncio.run(run_load(stack, tokens, args))
        finally:
            stack.stop()
    result["outbox_poll_seconds"] = args.outbox_poll if args.outbox_poll is not None else 0.5
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
