"""The consumer's `/internal/events`: each event applied at most once, atomically with the inbox."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from pydantic import Field
from sqlalchemy import Column, MetaData, Table, Text, insert
from sqlalchemy.dialects.postgresql import UUID
from sqlalchemy.ext.asyncio import AsyncSession

from micropay_common.events import (
    Event,
    EventType,
    PaymentFailed,
    PaymentSucceeded,
    TransferCompleted,
)
from micropay_common.inbox import EventMeta, events_router, on
from micropay_common.services import ServiceName
from micropay_common.state import AppState
from micropay_testing.apps import app_with, serve
from micropay_testing.http import bearer
from stack.postgres import connect

CONSUMER = "notifications"
SCHEMA = "notifications"
EFFECTS = "test_inbox_effects"

# No unique key on purpose: an event applied twice shows up as two rows.
effects = Table(
    EFFECTS,
    MetaData(),
    Column("event_id", UUID(as_uuid=True), nullable=False),
    Column("event_type", Text, nullable=False),
)


@dataclass
class Gate:
    """Holds a handler mid-transaction until the test releases it."""

    entered: asyncio.Event = field(default_factory=asyncio.Event)
    release: asyncio.Event = field(default_factory=asyncio.Event)


@dataclass
class Control:
    """How the test handler misbehaves for chosen event ids, and what it was handed."""

    fail_once: set[uuid.UUID] = field(default_factory=set)
    gates: dict[uuid.UUID, Gate] = field(default_factory=dict)
    received: dict[uuid.UUID, tuple[Event, EventMeta]] = field(default_factory=dict)


control = Control()


async def record_effect(session: AsyncSession, event: Event, meta: EventMeta) -> None:
    """The handler under test: writes its effect, then may wait or fail after writing it."""
    control.received[meta.id] = (event, meta)
    await session.execute(insert(effects).values(event_id=meta.id, event_type=meta.type))
    gate = control.gates.get(meta.id)
    if gate is not None:
        gate.entered.set()
        await gate.release.wait()
    if meta.id in control.fail_once:
        control.fail_once.discard(meta.id)
        raise RuntimeError("handler failed after writing its effect")


@pytest.fixture(scope="module")
async def admin(database) -> AsyncIterator[Any]:
    """A superuser connection, with the scratch effects table created and dropped around."""
    conn = await connect(database.admin_url)
    await conn.execute(
        f"DROP TABLE IF EXISTS {SCHEMA}.{EFFECTS};"
        f"CREATE TABLE {SCHEMA}.{EFFECTS} (event_id uuid NOT NULL, event_type text NOT NULL);"
        f"GRANT SELECT, INSERT ON {SCHEMA}.{EFFECTS} TO notifications_service;"
    )
    yield conn
    await conn.execute(f"DROP TABLE IF EXISTS {SCHEMA}.{EFFECTS}")
    await conn.close()


@pytest.fixture(scope="module")
def consumer_app(service_settings, admin) -> FastAPI:
    router = events_router(
        [on(PaymentFailed, record_effect), on(PaymentSucceeded, record_effect)],
        consumer=ServiceName(CONSUMER),
    )
    return app_with(service_settings(CONSUMER), SCHEMA, [router])


@pytest.fixture(scope="module")
async def client(consumer_app) -> AsyncIterator[httpx.AsyncClient]:
    async with serve(consumer_app) as client:
        yield client


@pytest.fixture(scope="module")
def service_headers(service_account_headers) -> dict[str, str]:
    """The account of the producer of this app's events (payment)."""
    return service_account_headers["payment"]


def envelope(event_type: str = "payment.failed", **changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": str(uuid.uuid4()),
        "type": event_type,
        "occurred_at": datetime.now(UTC).isoformat(),
        "producer": "payment",
        "data": {"payment_id": "pay_1", "user_id": "u_1", "amount": 500, "currency": "EUR"},
    }
    body.update(changes)
    return body


async def effect_count(admin, event_id: str) -> int:
    return int(
        await admin.fetchval(
            f"SELECT count(*) FROM {SCHEMA}.{EFFECTS} WHERE event_id = $1", uuid.UUID(event_id)
        )
    )


async def inbox_row(admin, event_id: str) -> Any:
    return await admin.fetchrow(
        f"SELECT event_type, producer FROM {SCHEMA}.inbox WHERE event_id = $1", uuid.UUID(event_id)
    )


async def test_applies_an_event_once_and_reports_duplicates(client, service_headers, admin):
    event = envelope(
        data={
            "payment_id": "pay_1",
            "user_id": "u_1",
            "amount": 500,
            "currency": "EUR",
            "failure_code": "card_declined",
            "added_later": 1,
        }
    )
    first = await client.post("/internal/events", json=event, headers=service_headers)
    assert first.status_code == 200
    assert first.json() == {"status": "applied"}
    assert await effect_count(admin, event["id"]) == 1
    # The handler was handed the event's own model, validated, and the envelope's metadata.
    handed, meta = control.received[uuid.UUID(event["id"])]
    assert handed == PaymentFailed(
        payment_id="pay_1", user_id="u_1", amount=500, currency="EUR", failure_code="card_declined"
    )
    assert (meta.type, meta.producer) == (EventType.PAYMENT_FAILED, "payment")
    assert meta.occurred_at == datetime.fromisoformat(event["occurred_at"])
    row = await inbox_row(admin, event["id"])
    assert (row["event_type"], row["producer"]) == ("payment.failed", "payment")

    again = await client.post("/internal/events", json=event, headers=service_headers)
    assert again.status_code == 200
    assert again.json() == {"status": "duplicate"}
    assert await effect_count(admin, event["id"]) == 1


async def test_handler_error_rolls_back_effect_and_inbox_then_redelivery_applies(
    client, service_headers, admin
):
    event = envelope()
    control.fail_once.add(uuid.UUID(event["id"]))
    failed = await client.post("/internal/events", json=event, headers=service_headers)
    assert failed.status_code == 500
    assert failed.headers["content-type"] == "application/problem+json"
    assert await effect_count(admin, event["id"]) == 0
    assert await inbox_row(admin, event["id"]) is None

    retried = await client.post("/internal/events", json=event, headers=service_headers)
    assert retried.json() == {"status": "applied"}
    assert await effect_count(admin, event["id"]) == 1


async def test_event_without_handler_is_ignored_but_recorded(
    client, service_account_headers, admin
):
    # transfer.completed is routed here but has no handler in this app.
    event = envelope("transfer.completed", producer="transactions")
    headers = service_account_headers["transactions"]
    response = await client.post("/internal/events", json=event, headers=headers)
    assert response.status_code == 200
    assert response.json() == {"status": "ignored"}
    assert (await inbox_row(admin, event["id"]))["event_type"] == "transfer.completed"
    assert await effect_count(admin, event["id"]) == 0
    again = await client.post("/internal/events", json=event, headers=headers)
    assert again.json() == {"status": "duplicate"}


def refusals(app: FastAPI, reason: str) -> float:
    """How many callers the app refused on /internal/events for `reason`."""
    value = AppState.of(app).metrics_registry.get_sample_value(
        "micropay_security_refusals_total", {"route": "/internal/events", "reason": reason}
    )
    return value or 0.0


@pytest.mark.parametrize(
    ("account", "changes", "reason"),
    [
        # Another producer's account, naming the right producer in the envelope.
        ("transactions", {}, "not_the_producer"),
        ("auth", {}, "not_the_producer"),
        # The right account, with an envelope that names someone else.
        ("payment", {"producer": "auth"}, "producer_mismatch"),
        # No one can be shown to produce a type this consumer does not know.
        ("payment", {"type": "user.deleted"}, "unknown_event_type"),
        # An account that produces nothing this consumer receives.
        ("notifications", {}, "caller_not_accepted"),
    ],
)
async def test_only_the_producers_account_may_deliver_and_a_refusal_records_nothing(
    client, consumer_app, service_account_headers, admin, caplog, account, changes, reason
):
    event = envelope(**changes)
    before = refusals(consumer_app, reason)
    with caplog.at_level(logging.WARNING, logger="micropay.security"):
        refused = await client.post(
            "/internal/events", json=event, headers=service_account_headers[account]
        )
    assert refused.status_code == 403, refused.text
    assert refused.headers["content-type"] == "application/problem+json"
    assert refused.json()["type"] == "caller_not_allowed"
    assert refused.json()["reason"] == reason
    assert await inbox_row(admin, event["id"]) is None
    assert await effect_count(admin, event["id"]) == 0
    assert refusals(consumer_app, reason) == before + 1
    [record] = [r for r in caplog.records if r.name == "micropay.security"]
    assert record.levelno == logging.WARNING
    assert (record.caller, record.route, record.reason) == (
        f"svc-{account}",
        "/internal/events",
        reason,
    )
    if reason != "caller_not_accepted":
        assert (record.event_id, record.event_type) == (event["id"], event["type"])
    # The producer's account delivers the very same id afterwards: nothing was taken by it.
    if reason == "not_the_producer":
        applied = await client.post(
            "/internal/events", json=event, headers=service_account_headers["payment"]
        )
        assert applied.json() == {"status": "applied"}


async def test_only_service_accounts_may_deliver(client, make_user, admin):
    event = envelope()
    anonymous = await client.post("/internal/events", json=event)
    assert anonymous.status_code == 401
    user = make_user()
    refused = await client.post("/internal/events", json=event, headers=bearer(user.access_token))
    assert refused.status_code == 403
    assert refused.json()["type"] == "caller_not_allowed"
    assert await inbox_row(admin, event["id"]) is None
    assert await effect_count(admin, event["id"]) == 0


@pytest.mark.parametrize(
    ("body", "bad_field"),
    [
        ({"id": "not-a-uuid"}, "id"),
        ({"data": ["not", "an", "object"]}, "data"),
        ({"occurred_at": "2024-05-01T12:00:00"}, "occurred_at"),  # no time zone
        ({"type": ""}, "type"),
        ({"producer": None}, "producer"),
    ],
)
async def test_malformed_envelope_is_a_422_problem(client, service_headers, admin, body, bad_field):
    event = envelope(**body)
    response = await client.post("/internal/events", json=event, headers=service_headers)
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["type"] == "validation_error"
    assert ["body", bad_field] in [error["loc"][:2] for error in problem["errors"]]
    if bad_field != "id":
        assert await inbox_row(admin, event["id"]) is None


@pytest.mark.parametrize(
    ("data", "bad_fields"),
    [
        ({"payment_id": "pay_1", "user_id": "u_1", "amount": -5, "currency": "EUR"}, ["amount"]),
        ({"payment_id": "pay_1", "user_id": "u_1", "amount": 5}, ["currency"]),
        (
            {"payment_id": "pay_1", "amount": "5", "currency": "eur"},
            ["user_id", "amount", "currency"],
        ),
    ],
)
async def test_data_that_is_not_the_events_model_is_a_422_and_not_recorded(
    client, service_headers, admin, data, bad_fields
):
    event = envelope("payment.succeeded", data=data)
    response = await client.post("/internal/events", json=event, headers=service_headers)
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["type"] == "validation_error"
    assert [error["loc"] for error in problem["errors"]] == [
        ["body", "data", field] for field in bad_fields
    ]
    # Nothing recorded: once the producer is fixed, the same event id is applied.
    assert await inbox_row(admin, event["id"]) is None
    assert await effect_count(admin, event["id"]) == 0


async def test_a_body_that_is_not_json_is_a_422_problem(client, service_headers):
    response = await client.post(
        "/internal/events",
        content=b"{not json",
        headers={**service_headers, "Content-Type": "application/json"},
    )
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"


async def wait_for_lock_waiter(admin) -> None:
    """Until another session waits on a row lock of the inbox (the duplicate insert)."""
    for _ in range(250):
        waiting = await admin.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
            " AND wait_event_type = 'Lock' AND query ILIKE '%inbox%'"
        )
        if waiting:
            return
        await asyncio.sleep(0.02)
    pytest.fail("the second delivery never waited on the first one's inbox row")


async def deliver_concurrently(client, headers, admin, event) -> list[httpx.Response]:
    """Hold the first delivery inside its handler until the second blocks on the inbox key."""
    gate = control.gates[uuid.UUID(event["id"])] = Gate()
    first = asyncio.create_task(client.post("/internal/events", json=event, headers=headers))
    await asyncio.wait_for(gate.entered.wait(), 10)
    second = asyncio.create_task(client.post("/internal/events", json=event, headers=headers))
    await wait_for_lock_waiter(admin)
    gate.release.set()
    return list(await asyncio.gather(first, second))


async def test_concurrent_duplicates_apply_once(client, service_headers, admin):
    event = envelope("payment.succeeded")
    first, second = await deliver_concurrently(client, service_headers, admin, event)
    assert first.json() == {"status": "applied"}
    assert second.json() == {"status": "duplicate"}
    assert await effect_count(admin, event["id"]) == 1


async def test_concurrent_duplicate_applies_when_the_first_rolls_back(
    client, service_headers, admin
):
    event = envelope("payment.succeeded")
    control.fail_once.add(uuid.UUID(event["id"]))
    first, second = await deliver_concurrently(client, service_headers, admin, event)
    assert first.status_code == 500
    assert second.json() == {"status": "applied"}
    assert await effect_count(admin, event["id"]) == 1


def test_handlers_for_events_not_routed_to_the_consumer_are_refused():
    with pytest.raises(ValueError, match=r"not a consumer of transfer\.completed"):
        events_router([on(TransferCompleted, record_effect)], consumer=ServiceName.TRANSACTIONS)


def test_a_handler_must_take_the_contracts_own_model():
    class StricterPaymentFailed(PaymentFailed):
        amount: int = Field(gt=0, le=100)

    with pytest.raises(ValueError, match=r"handle payment\.failed with PaymentFailed"):
        events_router([on(StricterPaymentFailed, record_effect)], consumer=ServiceName(CONSUMER))


def test_two_handlers_for_one_event_type_are_refused():
    with pytest.raises(ValueError, match=r"two handlers for payment\.failed"):
        events_router(
            [on(PaymentFailed, record_effect), on(PaymentFailed, record_effect)],
            consumer=ServiceName(CONSUMER),
        )


async def test_endpoint_is_documented_as_internal(client):
    schema = (await client.get("/openapi.json")).json()
    operation = schema["paths"]["/internal/events"]["post"]
    assert operation["tags"] == ["internal"]
