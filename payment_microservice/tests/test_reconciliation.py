"""Stripe trouble: unreachable Stripe, retries, webhooks that overtake confirmation, reconciliation.

"Stripe down" is a second payment app on the same database whose STRIPE_API_BASE is a closed
port; the live app then settles what it left, against the live localstripe.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import httpx
import pytest
import stripe

from micropay_testing.apps import serve
from micropay_testing.cognito import CognitoUser
from micropay_testing.polling import eventually
from payment_microservice.main import create_app
from payment_microservice.tests.helpers import PaymentStack, outbox_events


@pytest.fixture
async def stripe_down(payment_stack: PaymentStack, closed_port_url: str) -> AsyncIterator[Any]:
    """The payment service as it is while Stripe cannot be reached."""
    settings = payment_stack.settings_for(stripe_api_base=closed_port_url)
    async with serve(create_app(settings)) as client:
        yield client


def _pay_body(amount: int, method: str = "pm_card_visa") -> dict[str, Any]:
    return {"amount": amount, "currency": "USD", "payment_method": method}


async def _payment(payment_stack: PaymentStack, user: CognitoUser, payment_id: str) -> Any:
    response = await payment_stack.client.get(
        f"/payments/{payment_id}", headers=payment_stack.headers(user)
    )
    assert response.status_code == 200, response.text
    return response.json()


async def _reconcile(payment_stack: PaymentStack, service_headers: dict[str, str]) -> Any:
    response = await payment_stack.client.post(
        "/internal/reconcile", json={"min_age_seconds": 0}, headers=service_headers
    )
    assert response.status_code == 200, response.text
    return response.json()


async def _has_balance(payment_stack: PaymentStack, user: CognitoUser, amount: int) -> bool:
    return await payment_stack.balance(user) == amount


def _intents_for(stripe_client: stripe.StripeClient, payment_id: str) -> list[Any]:
    intents = stripe_client.v1.payment_intents.list({"limit": 100})
    return [i for i in intents.data if i.to_dict()["metadata"].get("payment_id") == payment_id]


async def test_stripe_unreachable_is_503_then_reconciliation_settles_once(
    payment_stack, stripe_down, make_user, db, service_headers, stripe_client
):
    user = make_user()
    key = str(uuid.uuid4())
    down = await stripe_down.post(
        "/payments", json=_pay_body(1300), headers=payment_stack.headers(user, key)
    )
    assert down.status_code == 503
    assert down.headers["content-type"] == "application/problem+json"
    assert down.headers["Retry-After"]
    assert down.json()["type"] == "payment_provider_unavailable"
    payment_id = down.json()["payment_id"]
    assert (await _payment(payment_stack, user, payment_id))["status"] == "processing"
    assert await outbox_events(db, "payment.succeeded", payment_id) == []

    report = await _reconcile(payment_stack, service_headers)
    assert report["payments_settled"] >= 1
    assert (await _payment(payment_stack, user, payment_id))["status"] == "succeeded"
    await eventually(lambda: _has_balance(payment_stack, user, 1300))

    # The client's retry now gets the settled payment, and Stripe was asked to charge once.
    retry = await payment_stack.client.post(
        "/payments", json=_pay_body(1300), headers=payment_stack.headers(user, key)
    )
    assert retry.status_code == 201
    assert retry.json()["id"] == payment_id
    assert retry.headers["Idempotent-Replayed"] == "true"
    assert len(_intents_for(stripe_client, payment_id)) == 1
    second = await _reconcile(payment_stack, service_headers)
    assert second["errors"] == 0
    await asyncio.sleep(0.5)
    assert await payment_stack.balance(user) == 1300
    assert len(await outbox_events(db, "payment.succeeded", payment_id)) == 2


async def test_retry_with_the_same_key_drives_a_processing_payment(
    payment_stack, stripe_down, make_user
):
    user = make_user()
    key = str(uuid.uuid4())
    down = await stripe_down.post(
        "/payments", json=_pay_body(900), headers=payment_stack.headers(user, key)
    )
    assert down.status_code == 503
    retry = await payment_stack.client.post(
        "/payments", json=_pay_body(900), headers=payment_stack.headers(user, key)
    )
    assert retry.status_code == 201, retry.text
    assert retry.json()["id"] == down.json()["payment_id"]
    assert retry.json()["status"] == "succeeded"
    assert "Idempotent-Replayed" not in retry.headers
    await eventually(lambda: _has_balance(payment_stack, user, 900))


async def test_webhook_before_confirmation_credits_once(
    payment_stack, stripe_down, make_user, db, stripe_client
):
    user = make_user()
    key = str(uuid.uuid4())
    down = await stripe_down.post(
        "/payments", json=_pay_body(1700), headers=payment_stack.headers(user, key)
    )
    payment_id = down.json()["payment_id"]
    # Stripe did get the confirmation after all; only its answer was lost. localstripe then
    # sends its signed payment_intent.succeeded before the service has heard anything.
    stripe_client.v1.payment_intents.create(
        {
            "amount": 1700,
            "currency": "usd",
            "payment_method": "pm_card_visa",
            "payment_method_types": ["card"],
            "confirm": True,
            "metadata": {"payment_id": payment_id, "user_id": user.sub},
        }
    )

    async def settled() -> bool:
        payment = await _payment(payment_stack, user, payment_id)
        return bool(payment["status"] == "succeeded")

    await eventually(settled)
    await eventually(lambda: _has_balance(payment_stack, user, 1700))

    # Then the confirmation's answer (the client's retry) reports the same success.
    retry = await payment_stack.client.post(
        "/payments", json=_pay_body(1700), headers=payment_stack.headers(user, key)
    )
    assert retry.status_code == 201
    assert retry.json()["status"] == "succeeded"
    assert len(_intents_for(stripe_client, payment_id)) == 1
    assert len(await outbox_events(db, "payment.succeeded", payment_id)) == 2
    await asyncio.sleep(0.5)
    assert await payment_stack.balance(user) == 1700


async def test_failed_3ds_is_reconciled_as_failed(
    payment_stack, make_user, card, localstripe_url, db, service_headers
):
    user = make_user()
    response = await payment_stack.pay(user, amount=1200, payment_method=card("4000002760003184"))
    payment = response.json()
    assert payment["status"] == "requires_action"
    intent_id = payment["client_secret"].split("_secret_")[0]
    async with httpx.AsyncClient() as browser:
        # The customer fails 3-D Secure; localstripe sends no event for that.
        failed = await browser.post(
            f"{localstripe_url}/v1/payment_intents/{intent_id}/_authenticate",
            data={"client_secret": payment["client_secret"], "success": "false", "key": "pk_t"},
        )
    assert failed.status_code == 200
    await _reconcile(payment_stack, service_headers)
    read = await _payment(payment_stack, user, payment["id"])
    assert read["status"] == "failed"
    assert read["failure_code"] == "payment_intent_authentication_failure"
    assert len(await outbox_events(db, "payment.failed", payment["id"])) == 1
    assert await payment_stack.balance(user) == 0


async def test_refund_with_stripe_down_is_completed_by_reconciliation(
    payment_stack, stripe_down, make_user, db, service_headers, stripe_client
):
    user = make_user()
    payment = (await payment_stack.pay(user, amount=1000)).json()
    await eventually(lambda: _has_balance(payment_stack, user, 1000))
    key = str(uuid.uuid4())
    down = await stripe_down.post(
        f"/payments/{payment['id']}/refunds",
        json={"amount": 400},
        headers=payment_stack.headers(user, key),
    )
    assert down.status_code == 503
    assert down.json()["type"] == "payment_provider_unavailable"
    refund = await db.fetchrow(
        "SELECT id, status, hold_id FROM payments.refunds WHERE payment_id = $1",
        uuid.UUID(payment["id"]),
    )
    assert refund["status"] == "pending"
    assert refund["hold_id"]
    # The hold keeps the money from being spent meanwhile.
    assert await payment_stack.balance(user) == 600

    report = await _reconcile(payment_stack, service_headers)
    assert report["refunds_settled"] >= 1
    listed = await payment_stack.client.get(
        f"/payments/{payment['id']}/refunds", headers=payment_stack.headers(user)
    )
    assert [(r["status"], r["amount"]) for r in listed.json()["data"]] == [("succeeded", 400)]
    assert await payment_stack.balance(user) == 600
    charge = (await _stripe_charge(db, payment["id"]))["stripe_charge_id"]
    assert [r.amount for r in stripe_client.v1.refunds.list({"charge": charge}).data] == [400]
    retry = await payment_stack.client.post(
        f"/payments/{payment['id']}/refunds",
        json={"amount": 400},
        headers=payment_stack.headers(user, key),
    )
    assert retry.status_code == 201
    assert retry.json()["id"] == str(refund["id"])
    events = await outbox_events(db, "payment.refunded", str(refund["id"]))
    assert events[0]["payload"]["data"]["hold_id"] == refund["hold_id"]
    await asyncio.sleep(0.5)
    assert await payment_stack.balance(user) == 600


async def _stripe_charge(db: asyncpg.Connection, payment_id: str) -> Any:
    return await db.fetchrow(
        "SELECT stripe_charge_id FROM payments.payments WHERE id = $1", uuid.UUID(payment_id)
    )


async def test_concurrent_requests_with_one_key_charge_once(
    payment_stack, make_user, stripe_client, db
):
    user = make_user()
    key = str(uuid.uuid4())
    responses = await asyncio.gather(
        *(
            payment_stack.client.post(
                "/payments", json=_pay_body(1100), headers=payment_stack.headers(user, key)
            )
            for _ in range(4)
        )
    )
    statuses = [r.status_code for r in responses]
    assert set(statuses) <= {201, 409}, [r.text for r in responses]
    assert 201 in statuses
    in_use = [r.json()["type"] for r in responses if r.status_code == 409]
    assert set(in_use) <= {"idempotency_key_in_use"}
    ids = {r.json()["id"] for r in responses if r.status_code == 201}
    assert len(ids) == 1
    assert len(_intents_for(stripe_client, ids.pop())) == 1
    await eventually(lambda: _has_balance(payment_stack, user, 1100))


async def test_reconcile_is_for_services_only(payment_stack, make_user):
    user = make_user()
    response = await payment_stack.client.post(
        "/internal/reconcile", json={}, headers=payment_stack.headers(user)
    )
    assert response.status_code == 403
    assert response.headers["content-type"] == "application/problem+json"


async def test_refund_stripe_refuses_voids_the_hold(payment_stack, make_user, db):
    user = make_user()
    payment_id = (await payment_stack.pay(user, amount=900)).json()["id"]
    await eventually(lambda: _has_balance(payment_stack, user, 900))
    # Stripe will not refund a charge it holds as failed (here marked so in localstripe).
    charge = (await _stripe_charge(db, payment_id))["stripe_charge_id"]
    await payment_stack.stripe_update(f"charges/{charge}", status="failed")

    refused = await payment_stack.refund(user, payment_id, amount=300)
    assert refused.status_code == 409
    assert refused.json()["type"] == "refund_failed"
    # The hold was voided: the whole balance is available again, nothing was debited.
    assert await payment_stack.balance(user) == 900
    listed = await payment_stack.client.get(
        f"/payments/{payment_id}/refunds", headers=payment_stack.headers(user)
    )
    assert [r["status"] for r in listed.json()["data"]] == ["failed"]
    assert (await _payment(payment_stack, user, payment_id))["amount_refunded"] == 0
