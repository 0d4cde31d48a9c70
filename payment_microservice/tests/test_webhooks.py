"""POST /payments/webhooks/stripe: signatures, replays, ordering, refunds made at Stripe.

localstripe sends real signed events for payment intents; the event types it never emits
(`charge.refunded`, `refund.created`) are signed here with the endpoint's secret, exactly as
Stripe documents the scheme. The service asks Stripe about every object an event names, so
the objects in those events are real localstripe objects.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from typing import Any

import asyncpg
import pytest

from micropay_testing.cognito import CognitoUser
from micropay_testing.polling import eventually
from payment_microservice.tests.helpers import PaymentStack, outbox_events


async def _succeeded_payment(
    payment_stack: PaymentStack, user: CognitoUser, amount: int = 1000
) -> dict[str, Any]:
    response = await payment_stack.pay(user, amount=amount)
    assert response.status_code == 201, response.text
    payment: dict[str, Any] = response.json()
    await eventually(lambda: _has_balance(payment_stack, user, amount))
    return payment


async def _has_balance(payment_stack: PaymentStack, user: CognitoUser, amount: int) -> bool:
    return await payment_stack.balance(user) == amount


async def _intent_of(db: asyncpg.Connection, payment_id: str) -> Any:
    return await db.fetchrow(
        "SELECT stripe_payment_intent_id, stripe_charge_id, amount_refunded, status "
        "FROM payments.payments WHERE id = $1",
        uuid.UUID(payment_id),
    )


def _refund_at_stripe(stripe_client: Any, row: Any, amount: int) -> dict[str, Any]:
    """A refund of the payment's charge made at Stripe directly (its dashboard)."""
    made = stripe_client.v1.refunds.create(
        {"payment_intent": row["stripe_payment_intent_id"], "amount": amount}
    )
    refund: dict[str, Any] = made.to_dict()
    return refund


def _event_body(
    event_type: str = "payment_intent.succeeded", obj: dict[str, Any] | None = None
) -> bytes:
    return json.dumps(
        {
            "id": f"evt_{uuid.uuid4().hex}",
            "object": "event",
            "type": event_type,
            "created": int(time.time()),
            "data": {"object": obj or {"id": "pi_unknown", "object": "payment_intent"}},
        }
    ).encode()


@pytest.mark.parametrize(
    "signature",
    [
        None,
        "",
        "t=1,v1=deadbeef",
        "garbage",
        "v1=abc",
    ],
)
async def test_missing_or_forged_signatures_are_400(payment_stack, signature):
    headers = {"Content-Type": "application/json"}
    if signature is not None:
        headers["Stripe-Signature"] = signature
    response = await payment_stack.client.post(
        "/payments/webhooks/stripe", content=_event_body(), headers=headers
    )
    assert response.status_code == 400
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["type"] == "invalid_signature"


async def test_signature_with_another_secret_is_400(payment_stack):
    body = _event_body()
    forged = payment_stack.sign(body, secret="whsec_not_ours")
    response = await payment_stack.client.post(
        "/payments/webhooks/stripe", content=body, headers={"Stripe-Signature": forged}
    )
    assert response.status_code == 400
    assert response.json()["type"] == "invalid_signature"


async def test_tampered_body_is_400(payment_stack):
    body = _event_body()
    signature = payment_stack.sign(body)
    tampered = body.replace(b"pi_unknown", b"pi_someone")
    response = await payment_stack.client.post(
        "/payments/webhooks/stripe", content=tampered, headers={"Stripe-Signature": signature}
    )
    assert response.status_code == 400


async def test_stale_timestamp_is_400_even_when_correctly_signed(payment_stack, db):
    body = _event_body()
    stale = payment_stack.sign(body, timestamp=int(time.time()) - 3600)
    response = await payment_stack.client.post(
        "/payments/webhooks/stripe", content=body, headers={"Stripe-Signature": stale}
    )
    assert response.status_code == 400
    assert "tolerance" in response.json()["detail"].lower()
    event_id = json.loads(body)["id"]
    assert (
        await db.fetchval("SELECT count(*) FROM payments.stripe_events WHERE id = $1", event_id)
        == 0
    )


async def test_signed_body_that_is_not_an_event_is_400(payment_stack):
    for body in (b"not json", b"[1, 2]", b'{"id": "evt_1", "type": "x"}'):
        response = await payment_stack.client.post(
            "/payments/webhooks/stripe",
            content=body,
            headers={"Stripe-Signature": payment_stack.sign(body)},
        )
        assert response.status_code == 400, body
        assert response.json()["type"] == "invalid_payload"


async def test_unknown_event_types_are_recorded_and_ignored(payment_stack, db):
    response = await payment_stack.send_event("customer.created", {"id": "cus_1"})
    assert response.status_code == 200
    assert response.json() == {"received": True, "outcome": "ignored"}
    outcome = await db.fetchval(
        "SELECT outcome FROM payments.stripe_events WHERE type = 'customer.created' "
        "ORDER BY received_at DESC LIMIT 1"
    )
    assert outcome == "ignored"


async def test_replayed_event_is_a_no_op(payment_stack, make_user, db, stripe_client):
    user = make_user()
    payment = await _succeeded_payment(payment_stack, user, 900)
    row = await _intent_of(db, payment["id"])
    refund = _refund_at_stripe(stripe_client, row, 300)
    event_id = f"evt_{uuid.uuid4().hex}"
    first = await payment_stack.send_event("refund.updated", refund, event_id=event_id)
    assert first.json()["outcome"] == "applied"
    for _ in range(3):
        again = await payment_stack.send_event("refund.updated", refund, event_id=event_id)
        assert again.status_code == 200
        assert again.json()["outcome"] == "duplicate"
    # The same Stripe refund in a new event (charge.refunded) is not counted twice either.
    charge = {
        "id": row["stripe_charge_id"],
        "object": "charge",
        "payment_intent": row["stripe_payment_intent_id"],
        "amount_refunded": 300,
        "refunds": {"object": "list", "data": [refund]},
    }
    other = await payment_stack.send_event("charge.refunded", charge)
    assert other.json()["outcome"] == "ignored"
    assert (await _intent_of(db, payment["id"]))["amount_refunded"] == 300
    refunded = await outbox_events(
        db, "payment.refunded", _refund_ids(await _refunds(db, payment))[0]
    )
    assert {e["consumer"] for e in refunded} == {"transactions", "notifications"}
    assert refunded[0]["payload"]["data"]["hold_id"] is None
    await eventually(lambda: _has_balance(payment_stack, user, 600))
    await asyncio.sleep(0.5)
    assert await payment_stack.balance(user) == 600


async def _refunds(db: asyncpg.Connection, payment: dict[str, Any]) -> list[Any]:
    return await db.fetch(  # type: ignore[no-any-return]
        "SELECT id, origin, status, amount FROM payments.refunds WHERE payment_id = $1",
        uuid.UUID(payment["id"]),
    )


def _refund_ids(rows: list[Any]) -> list[str]:
    return [str(r["id"]) for r in rows]


async def test_refund_made_at_stripe_debits_the_wallet_through_charge_refunded(
    payment_stack, make_user, db, stripe_client
):
    user = make_user()
    payment = await _succeeded_payment(payment_stack, user, 1000)
    row = await _intent_of(db, payment["id"])
    # Someone refunds 400 in Stripe's dashboard; Stripe then reports charge.refunded.
    made = stripe_client.v1.refunds.create(
        {"payment_intent": row["stripe_payment_intent_id"], "amount": 400}
    )
    charge = stripe_client.v1.charges.retrieve(row["stripe_charge_id"]).to_dict()
    response = await payment_stack.send_event("charge.refunded", charge)
    assert response.json()["outcome"] == "applied"
    refunds = await _refunds(db, payment)
    assert [(r["origin"], r["status"], r["amount"]) for r in refunds] == [
        ("stripe", "succeeded", 400)
    ]
    stored = await db.fetchval(
        "SELECT stripe_refund_id FROM payments.refunds WHERE id = $1", refunds[0]["id"]
    )
    assert stored == made.id
    await eventually(lambda: _has_balance(payment_stack, user, 600))
    read = await payment_stack.client.get(
        f"/payments/{payment['id']}", headers=payment_stack.headers(user)
    )
    assert read.json()["amount_refunded"] == 400


async def test_handler_error_is_5xx_and_nothing_is_recorded(
    payment_stack, make_user, db, stripe_client
):
    user = make_user()
    payment = await _succeeded_payment(payment_stack, user, 500)
    row = await _intent_of(db, payment["id"])
    # Stripe (localstripe, changed by hand) reports a refund larger than the payment, which
    # breaks the payments CHECK: the handler fails.
    refund = _refund_at_stripe(stripe_client, row, 100)
    await payment_stack.stripe_update(f"refunds/{refund['id']}", amount="5000")
    event_id = f"evt_{uuid.uuid4().hex}"
    response = await payment_stack.send_event("refund.updated", refund, event_id=event_id)
    assert response.status_code >= 500
    assert response.headers["content-type"] == "application/problem+json"
    assert (
        await db.fetchval("SELECT count(*) FROM payments.stripe_events WHERE id = $1", event_id)
        == 0
    )
    assert (await _intent_of(db, payment["id"]))["amount_refunded"] == 0
    assert await _refunds(db, payment) == []


async def test_intent_event_for_someone_elses_amount_is_ignored(payment_stack, make_user, db):
    user = make_user()
    response = await payment_stack.pay(user, amount=1000)
    payment = response.json()
    # A signed event naming our payment in its metadata but for another amount is not trusted.
    forged = {
        "id": f"pi_{uuid.uuid4().hex[:14]}",
        "object": "payment_intent",
        "status": "succeeded",
        "amount": 999_999,
        "currency": "usd",
        "metadata": {"payment_id": payment["id"]},
    }
    result = await payment_stack.send_event("payment_intent.succeeded", forged)
    assert result.json()["outcome"] == "ignored"
    assert len(await outbox_events(db, "payment.succeeded", payment["id"])) == 2
