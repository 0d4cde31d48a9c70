"""A consumer applies an event only when its producer's own account delivers it.

Every service account posts every event type, as its producer would send it, to every service
that receives events: only the producer's account gets it applied (or ignored, where the
service has no handler, and refused where the service receives nothing from that producer);
every other account is refused with 403 before anything is recorded,
so the service's tables are as they were.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest

from micropay_common.events import (
    EVENT_MODELS,
    Event,
    EventType,
    InvitationData,
    MoneyRequestData,
    MoneyRequestPaid,
    PaymentDisputeClosed,
    PaymentDisputeFundsReinstated,
    PaymentDisputeFundsWithdrawn,
    PaymentDisputeOpened,
    PaymentFailed,
    PaymentRefunded,
    PaymentRefundFailed,
    PaymentSucceeded,
    TransferCompleted,
    UserRegistered,
    events_consumed_by,
    producer_of,
)
from micropay_common.services import SERVICES, ServiceName
from micropay_testing.apps import serve
from micropay_testing.events import event_envelope
from micropay_testing.http import bearer
from notifications_microservice.main import create_app as create_notifications_app
from transactions_microservice.main import create_app as create_transactions_app

CONSUMERS = [ServiceName.TRANSACTIONS, ServiceName.NOTIFICATIONS]
"""The services with an inbox."""


def forged(event_type: EventType, user_id: str) -> Event:
    """A well-formed event of `event_type` about `user_id`, as its producer would publish it."""
    payment_id = f"pay_{uuid.uuid4().hex[:16]}"
    dispute_id = str(uuid.uuid4())
    events: dict[EventType, Event] = {
        EventType.USER_REGISTERED: UserRegistered(user_id=user_id, email=f"{user_id}@example.com"),
        EventType.PAYMENT_SUCCEEDED: PaymentSucceeded(
            payment_id=payment_id, user_id=user_id, amount=1_000_000, currency="USD"
        ),
        EventType.PAYMENT_FAILED: PaymentFailed(
            payment_id=payment_id, user_id=user_id, amount=500, currency="USD"
        ),
        EventType.PAYMENT_REFUNDED: PaymentRefunded(
            payment_id=payment_id,
            refund_id=f"re_{uuid.uuid4().hex[:12]}",
            user_id=user_id,
            amount=500,
            currency="USD",
        ),
        EventType.PAYMENT_REFUND_FAILED: PaymentRefundFailed(
            payment_id=payment_id,
            refund_id=str(uuid.uuid4()),
            user_id=user_id,
            amount=500,
            currency="USD",
            was_refunded=True,
        ),
        EventType.PAYMENT_DISPUTE_OPENED: PaymentDisputeOpened(
            payment_id=payment_id,
            dispute_id=dispute_id,
            user_id=user_id,
            amount=500,
            currency="USD",
        ),
        EventType.PAYMENT_DISPUTE_FUNDS_WITHDRAWN: PaymentDisputeFundsWithdrawn(
            payment_id=payment_id,
            dispute_id=dispute_id,
            user_id=user_id,
            amount=500,
            currency="USD",
            fee=1500,
        ),
        EventType.PAYMENT_DISPUTE_FUNDS_REINSTATED: PaymentDisputeFundsReinstated(
            payment_id=payment_id,
            dispute_id=dispute_id,
            user_id=user_id,
            amount=500,
            currency="USD",
        ),
        EventType.PAYMENT_DISPUTE_CLOSED: PaymentDisputeClosed(
            payment_id=payment_id,
            dispute_id=dispute_id,
            user_id=user_id,
            amount=500,
            currency="USD",
            status="won",
        ),
        EventType.TRANSFER_COMPLETED: TransferCompleted(
            transfer_id=str(uuid.uuid4()),
            from_user_id=user_id,
            from_email=f"{user_id}@example.com",
            to_user_id=str(uuid.uuid4()),
            to_email="someone@example.com",
            amount=500,
            currency="USD",
        ),
    }
    request = {
        "request_id": str(uuid.uuid4()),
        "requester_id": str(uuid.uuid4()),
        "requester_email": "someone@example.com",
        "payer_id": user_id,
        "payer_email": f"{user_id}@example.com",
        "amount": 500,
        "currency": "USD",
    }
    invitation = {
        "invitation_id": str(uuid.uuid4()),
        "from_user_id": user_id,
        "from_email": f"{user_id}@example.com",
        "to_email": f"nobody-{uuid.uuid4().hex[:8]}@example.com",
        "amount": 500,
        "currency": "USD",
        "expires_at": datetime.now(UTC) + timedelta(days=7),
    }
    for model in EVENT_MODELS.values():
        if issubclass(model, MoneyRequestData):
            extra = {"transfer_id": str(uuid.uuid4())} if model is MoneyRequestPaid else {}
            events.setdefault(model.event_type, model(**request, **extra))
        elif issubclass(model, InvitationData):
            events.setdefault(model.event_type, model(**invitation))
    return events[event_type]


@pytest.fixture(scope="module")
async def consumers(
    idle_transactions_settings: Any, moto_notifications_settings: Any
) -> AsyncIterator[dict[ServiceName, httpx.AsyncClient]]:
    """The real transactions and notifications apps, their background jobs idle."""
    transactions = create_transactions_app(idle_transactions_settings)
    notifications = create_notifications_app(moto_notifications_settings, background_jobs=())
    async with serve(transactions) as tx, serve(notifications) as nt:
        yield {ServiceName.TRANSACTIONS: tx, ServiceName.NOTIFICATIONS: nt}


async def schema_state(admin: asyncpg.Connection, schema: str) -> dict[str, Any]:
    """Every table of `schema` with its row count, and the wallets' balances."""
    tables = [
        row["tablename"]
        for row in await admin.fetch(
            "SELECT tablename FROM pg_tables WHERE schemaname = $1 ORDER BY tablename", schema
        )
    ]
    state: dict[str, Any] = {
        table: await admin.fetchval(f'SELECT count(*) FROM "{schema}"."{table}"')
        for table in tables
    }
    if schema == SERVICES[ServiceName.TRANSACTIONS].schema:
        state["balances"] = await admin.fetchval(
            "SELECT md5(coalesce(string_agg(id::text || ':' || balance || ':' || held, ','"
            " ORDER BY id), '')) FROM transactions.accounts"
        )
    return state


@pytest.mark.parametrize("account", [str(name) for name in SERVICES])
@pytest.mark.parametrize("event_type", sorted(EVENT_MODELS))
@pytest.mark.parametrize("consumer", CONSUMERS)
async def test_only_the_producers_account_gets_an_event_applied(
    consumers, admin, service_account_headers, consumer, event_type, account
):
    schema = SERVICES[consumer].schema
    envelope = event_envelope(forged(event_type, str(uuid.uuid4())))
    before = await schema_state(admin, schema)

    response = await consumers[consumer].post(
        "/internal/events", json=envelope, headers=service_account_headers[account]
    )

    recorded = await admin.fetchval(
        f"SELECT count(*) FROM {schema}.inbox WHERE event_id = $1", uuid.UUID(envelope["id"])
    )
    # A service receives from the producers of what it consumes; nothing comes from itself.
    senders = {producer_of(t) for t in events_consumed_by(consumer)}
    if account == producer_of(event_type) and account in senders:
        assert response.status_code == 200, response.text
        assert response.json()["status"] in {"applied", "ignored"}
        assert recorded == 1
    else:
        assert response.status_code == 403, response.text
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["type"] == "caller_not_allowed"
        assert recorded == 0
        assert await schema_state(admin, schema) == before


async def test_a_payment_posted_by_the_notifications_account_credits_nothing(
    consumers, make_user, service_account_headers
):
    client = consumers[ServiceName.TRANSACTIONS]
    user = make_user()
    registered = event_envelope(UserRegistered(user_id=user.sub, email=user.username))
    applied = await client.post(
        "/internal/events", json=registered, headers=service_account_headers["auth"]
    )
    assert applied.json() == {"status": "applied"}
    payment = event_envelope(forged(EventType.PAYMENT_SUCCEEDED, user.sub))

    refused = await client.post(
        "/internal/events", json=payment, headers=service_account_headers["notifications"]
    )

    assert refused.status_code == 403
    assert refused.json()["type"] == "caller_not_allowed"
    balances = await client.get("/transactions/balance", headers=bearer(user.access_token))
    assert all(wallet["balance"] == 0 for wallet in balances.json()["balances"])
    # The same event from the payment service's account is the one that credits.
    credited = await client.post(
        "/internal/events", json=payment, headers=service_account_headers["payment"]
    )
    assert credited.json() == {"status": "applied"}
    balances = await client.get("/transactions/balance", headers=bearer(user.access_token))
    assert {"currency": "USD", "balance": 1_000_000} in [
        {key: wallet[key] for key in ("currency", "balance")}
        for wallet in balances.json()["balances"]
    ]
