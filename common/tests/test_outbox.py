"""Outbox: events written with the change, relayed over real HTTP to a real consumer app.

The producer side runs as the payment service's role on a scratch copy of the outbox table
(`LIKE payments.outbox INCLUDING ALL`), so rows other test modules leave in `payments.outbox`
never reach these relays. The consumer is a real `events_router` app under uvicorn.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from sqlalchemy import Column, MetaData, Table, Text, insert, text
from sqlalchemy.dialects.postgresql import UUID
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from micropay_common.db import create_engine, create_sessionmaker
from micropay_common.events import (
    Event,
    EventEnvelope,
    PaymentFailed,
    PaymentRefunded,
    PaymentSucceeded,
)
from micropay_common.inbox import EventMeta, events_router, on
from micropay_common.jobs import backoff_delay
from micropay_common.outbox import OutboxGauges, OutboxRelay, outbox_relay_job, publish
from micropay_common.service_auth import ServiceTokenProvider
from micropay_common.services import ServiceName
from micropay_common.settings import ServiceSettings
from micropay_common.state import AppState
from micropay_testing.apps import app_with, serve, serve_http, silent_server
from micropay_testing.polling import eventually
from micropay_testing.processes import free_port
from stack.postgres import connect

PRODUCER = "payment"
PRODUCER_SCHEMA = "test_outbox_producer"
CONSUMER = "notifications"
EFFECTS = "test_outbox_effects"

# No unique key on purpose: an event applied twice shows up as two rows.
effects = Table(
    EFFECTS,
    MetaData(),
    Column("event_id", UUID(as_uuid=True), nullable=False),
    Column("event_type", Text, nullable=False),
)


async def record_effect(session: AsyncSession, event: Event, meta: EventMeta) -> None:
    await session.execute(insert(effects).values(event_id=meta.id, event_type=meta.type))


def failed(**changes: Any) -> PaymentFailed:
    """A `payment.failed` of the producer under test (to notifications only)."""
    fields = {"payment_id": f"pay_{uuid.uuid4().hex[:8]}", "user_id": "u_1", "amount": 500}
    return PaymentFailed(**{**fields, "currency": "EUR", **changes})


def succeeded(**changes: Any) -> PaymentSucceeded:
    """A `payment.succeeded` of the producer under test (to transactions and notifications)."""
    fields = {"payment_id": f"pay_{uuid.uuid4().hex[:8]}", "user_id": "u_1", "amount": 500}
    return PaymentSucceeded(**{**fields, "currency": "EUR", **changes})


class Receiver:
    """ASGI wrapper in front of the consumer app that counts raw deliveries and can refuse them.

    The consumer app itself deduplicates, so only a layer in front of it can see how often the
    relay really posted an event, and make the consumer fail without changing the code under
    test; as plain ASGI under uvicorn it keeps the relay talking real HTTP.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.reset()

    def reset(self) -> None:
        self.fail_next = 0
        self.delay = 0.0
        self.calls: Counter[str] = Counter()
        self.answers: list[tuple[str, int, Any]] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != "/internal/events":
            await self.app(scope, receive, send)
            return
        body = b""
        more = True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        event_id = str(json.loads(body).get("id"))
        self.calls[event_id] += 1
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.fail_next > 0:
            self.fail_next -= 1
            await send({"type": "http.response.start", "status": 503, "headers": []})
            await send({"type": "http.response.body", "body": b"consumer overloaded"})
            return

        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        status = 0
        chunks: list[bytes] = []

        async def capture(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))
            await send(message)

        await self.app(scope, replay, capture)
        self.answers.append((event_id, status, json.loads(b"".join(chunks) or b"null")))


def consumer_app(service_settings: Callable[..., ServiceSettings]) -> Any:
    return app_with(
        service_settings(CONSUMER),
        CONSUMER,
        [
            events_router(
                [on(PaymentFailed, record_effect), on(PaymentSucceeded, record_effect)],
                consumer=ServiceName(CONSUMER),
            )
        ],
    )


@pytest.fixture(scope="module")
async def admin(database) -> AsyncIterator[Any]:
    """A superuser connection; creates the scratch producer schema and effects table."""
    conn = await connect(database.admin_url)
    await conn.execute(
        f"""
        DROP SCHEMA IF EXISTS {PRODUCER_SCHEMA} CASCADE;
        CREATE SCHEMA {PRODUCER_SCHEMA};
        CREATE TABLE {PRODUCER_SCHEMA}.outbox (LIKE payments.outbox INCLUDING ALL);
        -- LIKE copies no trigger: the scratch outbox announces its rows as every schema's does.
        CREATE TRIGGER outbox_announce AFTER INSERT ON {PRODUCER_SCHEMA}.outbox
            FOR EACH STATEMENT EXECUTE FUNCTION payments.outbox_announce();
        GRANT USAGE ON SCHEMA {PRODUCER_SCHEMA} TO payment_service;
        GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA {PRODUCER_SCHEMA}
            TO payment_service;
        GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA {PRODUCER_SCHEMA} TO payment_service;
        DROP TABLE IF EXISTS {CONSUMER}.{EFFECTS};
        CREATE TABLE {CONSUMER}.{EFFECTS} (event_id uuid NOT NULL, event_type text NOT NULL);
        GRANT SELECT, INSERT ON {CONSUMER}.{EFFECTS} TO notifications_service;
        """
    )
    yield conn
    await conn.execute(f"DROP SCHEMA IF EXISTS {PRODUCER_SCHEMA} CASCADE")
    await conn.execute(f"DROP TABLE IF EXISTS {CONSUMER}.{EFFECTS}")
    await conn.close()


@pytest.fixture(scope="module")
async def receiver(service_settings, admin) -> AsyncIterator[tuple[Receiver, str]]:
    wrapped = Receiver(consumer_app(service_settings))
    async with serve_http(wrapped) as url:
        yield wrapped, url


@pytest.fixture(autouse=True)
async def clean(admin, receiver) -> None:
    await admin.execute(f"DELETE FROM {PRODUCER_SCHEMA}.outbox")
    receiver[0].reset()


@dataclass
class Producer:
    settings: ServiceSettings
    engine: AsyncEngine
    sessionmaker: async_sessionmaker[AsyncSession]
    relay: OutboxRelay

    async def publish(self, event: Event | None = None) -> EventEnvelope:
        """Publish (a `payment.failed` unless given) in a transaction of its own and commit,
        as a request handler would."""
        async with self.sessionmaker() as session, session.begin():
            return await publish(session, event or failed())


@pytest.fixture
def producer(service_settings) -> Callable[..., Any]:
    """Open a producer (its own engine, service account login and relay) with settings."""

    @asynccontextmanager
    async def open_producer(
        rng: Callable[[], float] | None = None, **overrides: Any
    ) -> AsyncIterator[Producer]:
        settings = service_settings(PRODUCER, **overrides)
        engine = create_engine(settings, PRODUCER_SCHEMA)
        sessionmaker = create_sessionmaker(engine)
        tokens = ServiceTokenProvider.from_settings(settings)
        relay = OutboxRelay(sessionmaker, settings, tokens, rng=rng)
        try:
            yield Producer(settings, engine, sessionmaker, relay)
        finally:
            await relay.aclose()
            await engine.dispose()

    return open_producer


def dead_url() -> str:
    """A URL where nothing listens: connections are refused."""
    return f"http://127.0.0.1:{free_port()}"


async def outbox_rows(admin, event_id: uuid.UUID) -> list[Any]:
    rows: list[Any] = await admin.fetch(
        f"SELECT * FROM {PRODUCER_SCHEMA}.outbox WHERE event_id = $1 ORDER BY consumer", event_id
    )
    return rows


async def outbox_row(admin, event_id: uuid.UUID) -> Any:
    (row,) = await outbox_rows(admin, event_id)
    return row


async def effect_count(admin, event_id: uuid.UUID) -> int:
    return int(
        await admin.fetchval(
            f"SELECT count(*) FROM {CONSUMER}.{EFFECTS} WHERE event_id = $1", event_id
        )
    )


async def relay_until_delivered(relay: OutboxRelay, admin, event_id: uuid.UUID) -> None:
    for _ in range(200):
        await relay.run_once()
        if (await outbox_row(admin, event_id))["status"] == "delivered":
            return
        await asyncio.sleep(0.01)
    pytest.fail(f"event {event_id} was not delivered")


# --- publish ------------------------------------------------------------------------------------


async def test_publish_writes_nothing_when_the_caller_rolls_back(producer, admin):
    async with producer() as p, p.sessionmaker() as session:
        await session.begin()
        envelope = await publish(session, succeeded(amount=1))
        # Not committed by publish: invisible to everyone else until the caller commits.
        assert await outbox_rows(admin, envelope.id) == []
        await session.rollback()
    assert await outbox_rows(admin, envelope.id) == []


async def test_publish_commits_one_row_per_consumer_with_the_caller(producer, admin):
    async with producer() as p, p.sessionmaker() as session:
        async with session.begin():
            envelope = await publish(session, succeeded(payment_id="pay_1"))
            assert await outbox_rows(admin, envelope.id) == []
        rows = await outbox_rows(admin, envelope.id)
    assert [row["consumer"] for row in rows] == ["notifications", "transactions"]
    for row in rows:
        assert row["event_type"] == "payment.succeeded"
        assert row["status"] == "pending"
        assert row["attempts"] == 0
        assert json.loads(row["payload"]) == envelope.model_dump(mode="json")
    assert envelope.data == {
        "payment_id": "pay_1",
        "user_id": "u_1",
        "amount": 500,
        "currency": "EUR",
        "three_d_secure": False,
    }
    assert (envelope.type, envelope.producer) == ("payment.succeeded", "payment")
    assert envelope.occurred_at.tzinfo is not None


async def test_publishing_the_same_event_id_again_adds_nothing(producer, admin):
    event_id = uuid.uuid4()
    async with producer() as p:
        for _ in range(2):
            async with p.sessionmaker() as session, session.begin():
                refunded = PaymentRefunded(
                    payment_id="pay_1", refund_id="re_1", user_id="u_1", amount=5, currency="EUR"
                )
                await publish(session, refunded, event_id=event_id)
    assert len(await outbox_rows(admin, event_id)) == 2  # transactions and notifications


# --- relay --------------------------------------------------------------------------------------


async def test_relay_retries_a_failing_consumer_and_the_effect_applies_once(
    producer, receiver, admin
):
    wrapped, url = receiver
    failures = 2
    wrapped.fail_next = failures
    async with producer(
        notifications_url=url, outbox_backoff_base_seconds=0.01, outbox_backoff_max_seconds=0.02
    ) as p:
        envelope = await p.publish(failed(payment_id="pay_7"))
        await relay_until_delivered(p.relay, admin, envelope.id)
        row = await outbox_row(admin, envelope.id)
        assert row["attempts"] == failures + 1
        assert row["delivered_at"] is not None
        assert row["last_error"].startswith("HTTP 503")
        assert wrapped.calls[str(envelope.id)] == failures + 1
        assert await effect_count(admin, envelope.id) == 1

        # Deliver it again on purpose, as after a relay crash between send and commit.
        await admin.execute(
            f"UPDATE {PRODUCER_SCHEMA}.outbox SET status = 'pending', next_attempt_at = now()"
            " WHERE event_id = $1",
            envelope.id,
        )
        assert await p.relay.run_once() == 1
    assert wrapped.calls[str(envelope.id)] == failures + 2
    assert wrapped.answers[-1] == (str(envelope.id), 200, {"status": "duplicate"})
    assert await effect_count(admin, envelope.id) == 1


def test_backoff_is_exponential_capped_and_fully_jittered():
    top = [backoff_delay(n, base=1.0, cap=60.0, rng=lambda: 1.0) for n in range(1, 10)]
    assert top == [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 60.0, 60.0, 60.0]
    assert backoff_delay(5, base=1.0, cap=60.0, rng=lambda: 0.0) == 0.0
    assert backoff_delay(5, base=1.0, cap=60.0, rng=lambda: 0.25) == 4.0
    assert backoff_delay(10_000, base=1.0, cap=600.0, rng=lambda: 1.0) == 600.0


async def test_next_attempt_grows_exponentially_to_the_cap_then_the_row_is_dead(
    producer, admin, caplog
):
    base, cap, max_attempts = 0.05, 0.2, 5
    async with producer(
        rng=lambda: 1.0,  # the top of the jitter range, so each delay is exactly the bound
        notifications_url=dead_url(),
        outbox_backoff_base_seconds=base,
        outbox_backoff_max_seconds=cap,
        outbox_max_attempts=max_attempts,
    ) as p:
        envelope = await p.publish()
        for attempt, expected in enumerate([0.05, 0.1, 0.2, 0.2], start=1):
            before = await admin.fetchval("SELECT clock_timestamp()")
            assert await p.relay.run_once() == 0
            after = await admin.fetchval("SELECT clock_timestamp()")
            row = await outbox_row(admin, envelope.id)
            assert row["status"] == "pending"
            assert row["attempts"] == attempt
            assert "not reachable" in row["last_error"]
            delay = timedelta(seconds=expected)
            assert before + delay <= row["next_attempt_at"] <= after + delay
            # Not due yet: another pass leaves it alone.
            assert await p.relay.run_once() == 0
            assert (await outbox_row(admin, envelope.id))["attempts"] == attempt
            await asyncio.sleep(expected + 0.01)

        with caplog.at_level(logging.WARNING, logger="micropay.outbox"):
            assert await p.relay.run_once() == 0
        row = await outbox_row(admin, envelope.id)
        assert row["status"] == "dead"
        assert row["attempts"] == max_attempts
        assert "not reachable" in row["last_error"]
        assert row["delivered_at"] is None
        assert any(
            str(envelope.id) in r.getMessage() and "dead" in r.getMessage() for r in caplog.records
        )
        await asyncio.sleep(cap)
        assert await p.relay.run_once() == 0
    assert (await outbox_row(admin, envelope.id))["attempts"] == max_attempts


async def test_jitter_spreads_retries_below_the_bound(producer, admin):
    async with producer(notifications_url=dead_url(), outbox_backoff_base_seconds=1.0) as p:
        envelopes = [await p.publish() for _ in range(20)]
        before = await admin.fetchval("SELECT clock_timestamp()")
        await p.relay.run_once()
        after = await admin.fetchval("SELECT clock_timestamp()")
    due = [(await outbox_row(admin, e.id))["next_attempt_at"] for e in envelopes]
    assert all(before <= at <= after + timedelta(seconds=1.0) for at in due)
    assert max(due) - min(due) > timedelta(seconds=0.1)


async def test_two_relays_deliver_every_event_exactly_once(producer, receiver, admin):
    wrapped, url = receiver
    # A little latency keeps both relays holding claimed batches at the same time.
    wrapped.delay = 0.005
    async with (
        producer(notifications_url=url, outbox_batch_size=5) as first,
        producer(notifications_url=url, outbox_batch_size=5) as second,
    ):
        envelopes = [await first.publish() for _ in range(50)]
        # Both drains share one admin connection, which runs one query at a time.
        admin_in_use = asyncio.Lock()

        async def drain(relay: OutboxRelay) -> int:
            total = 0
            while True:
                delivered = await relay.run_once()
                total += delivered
                if delivered == 0:
                    async with admin_in_use:
                        pending = await admin.fetchval(
                            f"SELECT count(*) FROM {PRODUCER_SCHEMA}.outbox"
                            " WHERE status = 'pending'"
                        )
                    if pending == 0:
                        return total
                    await asyncio.sleep(0.005)

        totals = await asyncio.gather(drain(first.relay), drain(second.relay))
    assert sum(totals) == 50
    assert all(total > 0 for total in totals), totals
    assert {str(e.id) for e in envelopes} == set(wrapped.calls)
    assert set(wrapped.calls.values()) == {1}
    for envelope in envelopes:
        assert await effect_count(admin, envelope.id) == 1


async def test_consumer_down_then_up(producer, service_settings, admin):
    port = free_port()
    async with producer(
        notifications_url=f"http://127.0.0.1:{port}",
        outbox_backoff_base_seconds=0.01,
        outbox_backoff_max_seconds=0.01,
    ) as p:
        envelope = await p.publish()
        assert await p.relay.run_once() == 0
        row = await outbox_row(admin, envelope.id)
        assert (row["status"], row["attempts"]) == ("pending", 1)
        assert "not reachable" in row["last_error"]
        assert await effect_count(admin, envelope.id) == 0

        async with serve_http(consumer_app(service_settings), port=port):
            await relay_until_delivered(p.relay, admin, envelope.id)
    assert (await outbox_row(admin, envelope.id))["attempts"] == 2
    assert await effect_count(admin, envelope.id) == 1


async def test_a_hanging_consumer_does_not_hold_up_the_others(producer, receiver, admin):
    _, url = receiver
    async with (
        silent_server() as silent,
        producer(transactions_url=silent, notifications_url=url, http_timeout_seconds=0.3) as p,
    ):
        envelope = await p.publish(succeeded(payment_id="pay_9"))
        started = asyncio.get_running_loop().time()
        assert await p.relay.run_once() == 1
        assert asyncio.get_running_loop().time() - started < 2.0
    notifications, transactions = await outbox_rows(admin, envelope.id)
    assert notifications["status"] == "delivered"
    assert transactions["status"] == "pending"
    assert "timed out" in transactions["last_error"]


async def test_relay_job_keeps_going_while_batches_are_full(service_settings, receiver, admin):
    _, url = receiver
    settings = service_settings(
        PRODUCER,
        notifications_url=url,
        outbox_batch_size=1,
        outbox_poll_interval_seconds=60,  # an idle pass would stall the test for a minute
    )
    app = app_with(settings, PRODUCER_SCHEMA, [], background_jobs=[outbox_relay_job])
    engine = create_engine(settings, PRODUCER_SCHEMA)
    try:
        async with create_sessionmaker(engine)() as session, session.begin():
            envelopes = [await publish(session, failed(payment_id=f"pay_{n}")) for n in range(5)]
    finally:
        await engine.dispose()
    async with serve(app):
        for _ in range(500):
            pending = await admin.fetchval(
                f"SELECT count(*) FROM {PRODUCER_SCHEMA}.outbox WHERE status = 'pending'"
            )
            if pending == 0:
                break
            await asyncio.sleep(0.01)
    assert pending == 0
    for envelope in envelopes:
        assert await effect_count(admin, envelope.id) == 1


async def delivered(admin, envelope: EventEnvelope) -> bool:
    """Whether the consumer applied the event."""
    return await effect_count(admin, envelope.id) == 1


async def test_relay_job_is_woken_by_the_commit_and_again_after_its_listener_is_cut(
    service_settings, producer, receiver, admin
):
    _, url = receiver
    settings = service_settings(
        PRODUCER,
        notifications_url=url,
        outbox_poll_interval_seconds=3600,  # only a wake-up can explain a delivery
    )
    app = app_with(settings, PRODUCER_SCHEMA, [], background_jobs=[outbox_relay_job])
    async with producer(notifications_url=url) as p, serve(app):
        # Delivered by the job's first pass or by a wake-up; either way the job is idle after.
        first = await p.publish()
        await eventually(lambda: delivered(admin, first), within=10, interval=0.01)
        woken = await p.publish()
        await eventually(lambda: delivered(admin, woken), within=5, interval=0.01)

        listener = AppState.of(app).listener
        killed = await admin.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE application_name = $1",
            f"{PRODUCER}-listener",
        )
        assert killed == 1
        await eventually(lambda: listener.connected and listener.connects == 2, within=10)
        # Announced while nothing listened? The reconnection's wake-up finds it.
        after = await p.publish()
        await eventually(lambda: delivered(admin, after), within=5, interval=0.01)
        # And the new connection hears the next commits.
        again = await p.publish()
        await eventually(lambda: delivered(admin, again), within=5, interval=0.01)


async def test_a_row_written_by_sql_alone_wakes_the_relay(
    service_settings, producer, receiver, admin
):
    # The hot paths' SQL functions write outbox rows without publish(): the table's own
    # trigger announces them.
    _, url = receiver
    settings = service_settings(PRODUCER, notifications_url=url, outbox_poll_interval_seconds=3600)
    app = app_with(settings, PRODUCER_SCHEMA, [], background_jobs=[outbox_relay_job])
    async with producer(notifications_url=url) as p, serve(app):
        first = await p.publish()
        await eventually(lambda: delivered(admin, first), within=10, interval=0.01)
        envelope = EventEnvelope.of(failed())
        async with p.sessionmaker() as session, session.begin():
            await session.execute(
                text(
                    "INSERT INTO outbox (event_id, event_type, consumer, payload)"
                    " VALUES (:id, :type, 'notifications', CAST(:payload AS jsonb))"
                ),
                {
                    "id": envelope.id,
                    "type": envelope.type,
                    "payload": envelope.model_dump_json(),
                },
            )
        await eventually(lambda: delivered(admin, envelope), within=5, interval=0.01)


# --- the outbox on /metrics -----------------------------------------------------------------


async def test_gauges_show_each_consumers_backlog_its_oldest_event_and_dead_events(producer, admin):
    registry = CollectorRegistry()
    gauges = OutboxGauges.register(registry)
    async with producer(notifications_url=dead_url(), transactions_url=dead_url()) as p:
        await gauges.observe(p.sessionmaker, ["notifications", "transactions"])
        assert _sample(registry, "micropay_outbox_pending", "notifications") == 0
        assert _sample(registry, "micropay_outbox_dead", "transactions") == 0

        dead = await p.publish(failed())  # to notifications only
        await p.publish(succeeded())  # to both
        await admin.execute(
            f"UPDATE {PRODUCER_SCHEMA}.outbox SET status = 'dead',"
            " created_at = now() - interval '1 hour' WHERE event_id = $1",
            dead.id,
        )
        await admin.execute(
            f"UPDATE {PRODUCER_SCHEMA}.outbox SET created_at = now() - interval '90 seconds'"
            " WHERE status = 'pending' AND consumer = 'transactions'"
        )
        await gauges.observe(p.sessionmaker, ["notifications", "transactions"])

    assert _sample(registry, "micropay_outbox_pending", "notifications") == 1
    assert _sample(registry, "micropay_outbox_pending", "transactions") == 1
    assert _sample(registry, "micropay_outbox_dead", "notifications") == 1
    assert _sample(registry, "micropay_outbox_dead", "transactions") == 0
    # The dead row's age is not a backlog's: only pending rows count.
    assert _sample(registry, "micropay_outbox_oldest_pending_age_seconds", "transactions") >= 90
    assert _sample(registry, "micropay_outbox_oldest_pending_age_seconds", "notifications") < 60
    gauges.unregister(registry)
    assert (
        registry.get_sample_value("micropay_outbox_pending", {"consumer": "notifications"}) is None
    )


def _sample(registry: CollectorRegistry, name: str, consumer: str) -> float:
    value = registry.get_sample_value(name, {"consumer": consumer})
    assert value is not None, f"{name} has no sample for {consumer}"
    return value
