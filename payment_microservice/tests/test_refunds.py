"""POST /payments/{id}/refunds: wallet hold, Stripe refund, capture — against the real wallet."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from typing import Any

import asyncpg
import httpx
import stripe

from micropay_testing.cognito import CognitoUser
from micropay_testing.http import bearer
from micropay_testing.polling import eventually
from payment_microservice.tests.helpers import PaymentStack, outbox_events


async def _has_balance(payment_stack: PaymentStack, user: CognitoUser, amount: int) -> bool:
    return await payment_stack.balance(user) == amount


async def _credited_payment(
    payment_stack: PaymentStack, user: CognitoUser, amount: int = 1000
) -> dict[str, Any]:
    response = await payment_stack.pay(user, amount=amount)
    assert response.status_code == 201, response.text
    await eventually(lambda: _has_balance(payment_stack, user, amount))
    payment: dict[str, Any] = response.json()
    return payment


def _stripe_refunds(stripe_client: stripe.StripeClient, db_row: Any) -> list[int]:
    refunds = stripe_client.v1.refunds.list({"charge": db_row["stripe_charge_id"], "limit": 100})
    return sorted(int(r.amount) for r in refunds.data)


async def _payment_row(db: asyncpg.Connection, payment_id: str) -> Any:
    return await db.fetchrow(
        "SELECT stripe_payment_intent_id, stripe_charge_id, amount_refunded "
        "FROM payments.payments WHERE id = $1",
        uuid.UUID(payment_id),
    )


async def test_partial_then_full_refund_debits_the_wallet_and_refunds_the_card(
    payment_stack, make_user, db, stripe_client
):
    user = make_user()
    payment = await _credited_payment(payment_stack, user, 1000)
    key = str(uuid.uuid4())
    partial = await payment_stack.refund(
        user, payment["id"], key=key, amount=300, reason="requested_by_customer"
    )
    assert partial.status_code == 201, partial.text
    refund = partial.json()
    assert (refund["amount"], refund["status"], refund["currency"]) == (300, "succeeded", "USD")
    assert refund["reason"] == "requested_by_customer"
    assert await payment_stack.balance(user) == 700

    replay = await payment_stack.refund(
        user, payment["id"], key=key, amount=300, reason="requested_by_customer"
    )
    assert replay.status_code == 201
    assert replay.json() == refund
    assert replay.headers["Idempotent-Replayed"] == "true"

    rest = await payment_stack.refund(user, payment["id"])
    assert rest.status_code == 201, rest.text
    assert rest.json()["amount"] == 700
    assert await payment_stack.balance(user) == 0
    row = await _payment_row(db, payment["id"])
    assert row["amount_refunded"] == 1000
    assert _stripe_refunds(stripe_client, row) == [300, 700]

    events = await outbox_events(db, "payment.refunded", refund["id"])
    assert {e["consumer"] for e in events} == {"transactions", "notifications"}
    assert events[0]["payload"]["data"]["hold_id"]
    assert events[0]["payload"]["data"]["amount"] == 300

    more = await payment_stack.refund(user, payment["id"], amount=1)
    assert more.status_code == 409
    assert more.json()["type"] == "refund_exceeds_payment"
    assert more.json()["refundable"] == 0

    listed = await payment_stack.client.get(
        f"/payments/{payment['id']}/refunds", headers=payment_stack.headers(user)
    )
    assert [r["amount"] for r in listed.json()["data"]] == [700, 300]
    # The events reach the wallet too; the captured holds make them change nothing more.
    await asyncio.sleep(1.0)
    assert await payment_stack.balance(user) == 0


async def test_over_refund_is_409_and_stripe_is_not_called(
    payment_stack, make_user, db, stripe_client
):
    user = make_user()
    payment = await _credited_payment(payment_stack, user, 800)
    response = await payment_stack.refund(user, payment["id"], amount=801)
    assert response.status_code == 409
    assert response.json()["type"] == "refund_exceeds_payment"
    assert response.json()["refundable"] == 800
    assert _stripe_refunds(stripe_client, await _payment_row(db, payment["id"])) == []
    assert await payment_stack.balance(user) == 800


async def test_concurrent_refunds_never_exceed_the_payment(
    payment_stack, make_user, db, stripe_client
):
    user = make_user()
    payment = await _credited_payment(payment_stack, user, 1000)
    responses = await asyncio.gather(
        *(payment_stack.refund(user, payment["id"], amount=400) for _ in range(5))
    )
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [201, 201, 409, 409, 409], [r.text for r in responses]
    assert {r.json()["type"] for r in responses if r.status_code == 409} == {
        "refund_exceeds_payment"
    }
    row = await _payment_row(db, payment["id"])
    assert row["amount_refunded"] == 800
    assert _stripe_refunds(stripe_client, row) == [400, 400]
    assert await payment_stack.balance(user) == 200


async def test_wallet_that_cannot_cover_the_refund_is_409_and_stripe_is_not_called(
    payment_stack, make_user, db, stripe_client, service_account_headers
):
    payer, friend = make_user(), make_user()
    payment = await _credited_payment(payment_stack, payer, 1000)
    # The friend is a registered user of the wallet (the auth service's event).
    registered = {
        "id": str(uuid.uuid4()),
        "type": "user.registered",
        "occurred_at": datetime.now(UTC).isoformat(),
        "producer": "auth",
        "data": {"user_id": friend.sub, "email": friend.username},
    }
    async with httpx.AsyncClient(base_url=payment_stack.transactions_url) as wallet:
        delivered = await wallet.post(
            "/internal/events", json=registered, headers=service_account_headers["auth"]
        )
        assert delivered.status_code == 200, delivered.text
        sent = await wallet.post(
            "/transactions/transfers",
            json={"to_email": friend.username, "amount": 800, "currency": "USD"},
            headers={**bearer(payer.access_token), "Idempotency-Key": str(uuid.uuid4())},
        )
        assert sent.status_code == 201, sent.text
    assert await payment_stack.balance(payer) == 200

    key = str(uuid.uuid4())
    response = await payment_stack.refund(payer, payment["id"], key=key, amount=500)
    assert response.status_code == 409
    assert response.json()["type"] == "insufficient_funds"
    assert _stripe_refunds(stripe_client, await _payment_row(db, payment["id"])) == []
    assert await payment_stack.balance(payer) == 200
    again = await payment_stack.refund(payer, payment["id"], key=key, amount=500)
    assert again.status_code == 409
    assert again.headers["Idempotent-Replayed"] == "true"
    # The failed refund reserved nothing: what the wallet can cover is still refundable.
    ok = await payment_stack.refund(payer, payment["id"], amount=200)
    assert ok.status_code == 201, ok.text
    assert await payment_stack.balance(payer) == 0


async def test_only_succeeded_payments_of_the_caller_are_refundable(payment_stack, make_user, card):
    owner, stranger = make_user(), make_user()
    declined = await payment_stack.pay(owner, payment_method=card("4000000000000341"))
    failed_id = declined.json()["payment_id"]
    response = await payment_stack.refund(owner, failed_id)
    assert response.status_code == 409
    assert response.json()["type"] == "payment_not_refundable"

    payment = await _credited_payment(payment_stack, owner, 600)
    hidden = await payment_stack.refund(stranger, payment["id"], amount=100)
    assert hidden.status_code == 404
    missing = await payment_stack.refund(owner, str(uuid.uuid4()), amount=100)
    assert missing.status_code == 404
    invalid = await payment_stack.refund(owner, payment["id"], amount=0)
    assert invalid.status_code == 422
    no_key = await payment_stack.client.post(
        f"/payments/{payment['id']}/refunds", json={}, headers=payment_stack.headers(owner)
    )
    assert no_key.status_code == 400
    assert await payment_stack.balance(owner) == 600


async def test_the_echo_of_our_own_refund_does_not_debit_twice(
    payment_stack, make_user, db, stripe_client
):
    user = make_user()
    payment = await _credited_payment(payment_stack, user, 1000)
    refund = (await payment_stack.refund(user, payment["id"], amount=250)).json()
    row = await _payment_row(db, payment["id"])
    charge = stripe_client.v1.charges.retrieve(row["stripe_charge_id"]).to_dict()
    echoed = await payment_stack.send_event("charge.refunded", charge)
    assert echoed.json()["outcome"] == "ignored"
    stripe_refund = stripe_client.v1.refunds.list({"charge": row["stripe_charge_id"]}).data[0]
    updated = await payment_stack.send_event("refund.updated", stripe_refund.to_dict())
    assert updated.json()["outcome"] == "ignored"
    assert (await _payment_row(db, payment["id"]))["amount_refunded"] == 250
    assert len(await outbox_events(db, "payment.refunded", refund["id"])) == 2
    await asyncio.sleep(0.5)
    assert await payment_stack.balance(user) == 750
