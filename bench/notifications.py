"""Notification delivery: the worker's own CPU per notification, and the AWS stand-in's.

Starts PostgreSQL (DATABASE_URL or the embedded server; a database `micropay_bench_<pid>` at
this checkout's latest revision, dropped at the end) and a moto server, writes `--transfers`
transfers' worth of pending notifications in one transaction (as `transfer.completed` makes
them: an email and a push to each side, texts already rendered) or, with `--events`, receives
that many `transfer.completed` events through the service's inbox and handler (one transaction
each, as `POST /internal/events` applies them; their CPU reported apart), then lets one
delivery worker in this process, with the service's default batch size and concurrency, drain
them. Prints the
drain rate, this process's CPU per notification (getrusage: every thread of the worker), the
moto server's CPU per notification and per AWS call (/proc/<pid>/stat), and the AWS calls
made (boto3's counted with botocore's `before-send` event, the worker's own SES and SNS client's
from its call metrics). `--source DIR` imports the notifications
service from another source tree (say `git archive <commit> notifications_microservice | tar
-x -C DIR`), so the code before a change is measured by the same script. Run from the root:

    .venv/bin/python -m bench.notifications --transfers 500
    .venv/bin/python -m bench.notifications --transfers 500 --source /tmp/before
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import inspect
import json
import os
import pstats
import resource
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry
from sqlalchemy import text

from bench.auth_verify import DATA_DIR, _wait, spawn
from stack.bootstrap import bootstrap_aws
from stack.launcher import LOCAL_AWS_CREDENTIALS, free_port
from stack.postgres import connect, drop_database, prepare_database, start_postgres

HTML = "<p>" + "You sent 12.34 USD to someone; the money is in their wallet now. " * 20 + "</p>"
TEXT = "You sent 12.34 USD to someone; the money is in their wallet now.\n" * 5


def process_cpu(pid: int) -> float:
    """CPU seconds (user + system) a process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def own_cpu() -> float:
    """CPU seconds of this process, every thread included."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def write_backlog(admin_url: str, transfers: int) -> int:
    """Pending notifications of `transfers` transfers between fresh users, in one transaction."""
    rows = []
    for _ in range(transfers):
        event_id = uuid.uuid4()
        for side in ("transfer_sent", "transfer_received"):
            user_id = str(uuid.uuid4())
            for channel in ("email", "push"):
                rows.append(
                    (
                        uuid.uuid4(),
                        event_id,
                        "transfer.completed",
                        user_id,
                        channel,
                        f"b-{user_id[:12]}@example.com" if channel == "email" else None,
                        f"Transfer: {side}",
                        TEXT,
                        HTML if channel == "email" else None,
                        json.dumps({"title": side, "body": TEXT[:80], "data": {}}),
                    )
                )
    conn = await connect(admin_url)
    try:
        await conn.copy_records_to_table(
            "notifications",
            schema_name="notifications",
            columns=[
                "id",
                "event_id",
                "event_type",
                "user_id",
                "channel",
                "recipient",
                "subject",
                "body_text",
                "body_html",
                "payload",
            ],
            records=rows,
        )
    finally:
        await conn.close()
    return len(rows)


async def receive_events(sessionmaker: Any, transfers: int) -> tuple[int, float]:
    """Apply `transfers` `transfer.completed` events between fresh users as the service's
    `POST /internal/events` does once the delivery is authorized (the inbox row and the
    handler, one transaction each); the notifications they made and this process's CPU."""
    from micropay_common.events import EventEnvelope, TransferCompleted
    from micropay_common.inbox import EventInbox
    from micropay_common.services import ServiceName
    from notifications_microservice.notifications.handlers import HANDLERS

    inbox = EventInbox(ServiceName.NOTIFICATIONS, HANDLERS)
    envelopes = []
    for _ in range(transfers):
        sender, recipient = str(uuid.uuid4()), str(uuid.uuid4())
        event = TransferCompleted(
            transfer_id=str(uuid.uuid4()),
            from_user_id=sender,
            from_email=f"s-{sender[:12]}@example.com",
            to_user_id=recipient,
            to_email=f"r-{recipient[:12]}@example.com",
            amount=1234,
            currency="USD",
            description="lunch",
        )
        envelopes.append(EventEnvelope.of(event))
    started = own_cpu()
    for envelope in envelopes:
        async with sessionmaker() as session, session.begin():
            receipt = await inbox.apply(session, envelope)
            assert receipt.status == "applied", receipt
    spent = own_cpu() - started
    async with sessionmaker() as session:
        made = await session.scalar(text("SELECT count(*) FROM notifications.notifications"))
    return int(made or 0), spent


async def drain(
    settings_values: dict[str, Any],
    admin_url: str,
    transfers: int,
    profile: bool,
    events: bool = False,
) -> None:
    """Write the backlog (or receive the events that make it), drain it with one worker,
    print what it cost."""
    from micropay_common.db import create_engine, create_sessionmaker
    from micropay_common.metrics import AwsCallMetrics
    from notifications_microservice.aws import build_clients
    from notifications_microservice.delivery.worker import DeliveryWorker
    from notifications_microservice.models import SCHEMA
    from notifications_microservice.settings import NotificationsSettings
    from notifications_microservice.webhooks.secrets import build_secrets

    settings = NotificationsSettings.model_validate(settings_values)
    engine = create_engine(settings, SCHEMA)
    aws = build_clients(settings)
    calls: dict[str, int] = {}

    def count(event_name: str, **_: Any) -> None:
        operation = event_name.rsplit(".", 1)[-1]
        calls[operation] = calls.get(operation, 0) + 1

    aws.ses.meta.events.register("before-send", count)
    aws.sns.meta.events.register("before-send", count)
    secrets = build_secrets(aws.kms, settings.webhook_secrets_kms_key_id, ttl_seconds=0, max_size=0)
    # The calls the worker makes without boto3 are timed by its call metrics (when the source
    # under test has them).
    registry = CollectorRegistry()
    lean_calls = AwsCallMetrics(registry)
    takes_metrics = "aws_calls" in inspect.signature(DeliveryWorker).parameters
    extra: dict[str, Any] = {"aws_calls": lean_calls} if takes_metrics else {}
    worker = DeliveryWorker(create_sessionmaker(engine), settings, aws, secrets, **extra)
    moto_pid = int(settings_values["moto_pid"])
    try:
        if events:
            total, intake = await receive_events(create_sessionmaker(engine), transfers)
            print(
                f"events received: {transfers} transfer.completed, {total} notifications; "
                f"{intake / transfers * 1000:.2f} ms of CPU per event "
                f"({intake / total * 1000:.2f} ms per notification)"
            )
        else:
            total = await write_backlog(admin_url, transfers)
        profiler = cProfile.Profile() if profile else None
        started_cpu, started_moto, started = own_cpu(), process_cpu(moto_pid), time.monotonic()
        if profiler:
            profiler.enable()
        while await worker.run_once():
            pass
        if profiler:
            profiler.disable()
            pstats.Stats(profiler).sort_stats("tottime").print_stats(30)
        elapsed = time.monotonic() - started
        cpu, moto = own_cpu() - started_cpu, process_cpu(moto_pid) - started_moto
    finally:
        await worker.aclose()
        await engine.dispose()
    for metric in lean_calls.seconds.collect():
        for sample in metric.samples:
            if sample.name.endswith("_count") and sample.value:
                operation = sample.labels["operation"]
                calls[operation] = calls.get(operation, 0) + int(sample.value)
    sent_calls = sum(n for op, n in calls.items() if op != "GetSendQuota")
    print(f"source: {sys.modules['notifications_microservice'].__file__}")
    print(
        f"batch {settings.delivery_batch_size}, "
        f"concurrency {getattr(settings, 'delivery_concurrency', 'n/a')}"
    )
    print(f"notifications: {total} ({transfers} transfers), drained in {elapsed:.1f} s")
    print(f"drain rate: {total / elapsed:.0f} notifications/s")
    print(f"AWS calls: {dict(sorted(calls.items()))} ({sent_calls / total:.2f} per notification)")
    print(f"worker CPU: {cpu / total * 1000:.2f} ms per notification")
    print(
        f"moto CPU: {moto / total * 1000:.2f} ms per notification, "
        f"{moto / max(sent_calls, 1) * 1000:.2f} ms per call"
    )


def main() -> None:
    """Parse arguments, start PostgreSQL and moto, run the drain, clean up."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--transfers", type=int, default=500)
    parser.add_argument("--source", type=Path, help="import the service from this tree")
    parser.add_argument(
        "--profile", action="store_true", help="print where the event loop's thread spends time"
    )
    parser.add_argument(
        "--events",
        action="store_true",
        help="make the backlog by receiving transfer.completed events through the inbox "
        "(their cost reported apart) instead of writing its rows",
    )
    args = parser.parse_args()
    if args.source:
        sys.path.insert(0, str(args.source.resolve()))
    for name, value in LOCAL_AWS_CREDENTIALS.items():
        os.environ.setdefault(name, value)

    server = start_postgres(DATA_DIR / "postgres", os.environ.get("DATABASE_URL"))
    database = f"micropay_bench_{os.getpid()}"
    urls = asyncio.run(
        prepare_database(server, database, DATA_DIR / "role-passwords.json", recreate=True)
    )
    moto_port = free_port()
    logs = DATA_DIR / "bench-logs"
    logs.mkdir(parents=True, exist_ok=True)
    moto = spawn(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(moto_port)],
        logs / "notifications-moto.log",
        dict(os.environ),
    )
    try:
        endpoint = f"http://127.0.0.1:{moto_port}"
        _wait(f"{endpoint}/moto-api/", moto)
        aws = bootstrap_aws(endpoint_url=endpoint)
        service = aws.service_accounts["notifications"]
        values = {
            "service_name": "notifications",
            "database_url": urls["notifications"],
            "aws_region": aws.region,
            "aws_endpoint_url": endpoint,
            "cognito_user_pool_id": aws.user_pool_id,
            "cognito_client_id": aws.client_id,
            "cognito_client_secret": aws.client_secret,
            "cognito_issuer": aws.issuer,
            "cognito_jwks_url": aws.jwks_url,
            "service_account_username": service["username"],
            "service_account_password": service["password"],
            "ses_sender": aws.ses_sender,
            "sns_topic_arn": aws.sns_topic_arn,
            "webhook_secrets_kms_key_id": aws.webhook_secrets_kms_key_id,
            # moto answers SES's sandbox quota (1/s), which would measure only the bucket.
            "ses_max_send_rate": 100000.0,
            "log_level": "WARNING",
            "moto_pid": moto.pid,
        }
        asyncio.run(
            drain(values, server.url_for(database), args.transfers, args.profile, args.events)
        )
    finally:
        moto.terminate()
        moto.wait(timeout=10)
        asyncio.run(drop_database(server, database))


if __name__ == "__main__":
    main()
