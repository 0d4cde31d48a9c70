"""A refund follows Stripe's status: pending keeps its hold, failed gives the money back once.

localstripe makes every refund `succeeded` at once; the project's localstripe wrapper
(stack/localstripe_server.py) adds Stripe's documented lifecycle: a refund of a charge paid
with the test card 4000000000007726 starts `pending`, and changing a refund's `status` there
(as Stripe's side does) sends a signed `refund.updated`. Events Stripe would send that
localstripe cannot (a repeat, one that overtakes the refund's own answer, a forged one) are
signed here with the endpoint's secret; the service retrieves every object from Stripe first,
so what they claim in their body never counts.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest

from micropay_testing.apps import serve, serve_http
from micropay_testing.cognito import CognitoUser
from micropay_testing.polling import eventually
from payment_microservice.main import create_app
from payment_microservice.tests.helpers import PaymentStack, outbox_events
from transactions_microservice.main import create_app as create_transactions_app
from transactions_microservice.settings import TransactionsSettings

PENDING_REFUND_CARD = "4000000000007726"
"""Stripe's test card whose refunds start `pending` (and so in our localstripe)."""


async def _credited(
    payment_stack: PaymentStack, user: CognitoUser, amount: int, method: str = "pm_card_visa"
) -> dict[str, Any]:
    response = await payment_stack.pay(user, amount=amount, payment_method=method)
    assert response.status_code == 201, response.text
    await eventually(lambda: _has_balance(payment_stack, user, amount))
    payment: dict[str, Any] = response.json()
    return payment


async def _has_balance(payment_stack: PaymentStack, user: CognitoUser, amount: int) -> bool:
    return await payment_stack.balance(user) == amount


async def _refund_row(db: asyncpg.Connection, refund_id: str) -> Any:
    return await db.fetchrow(
        "SELECT status, hold_id, stripe_refund_id, failure_code FROM payments.refunds "
        "WHERE id = $1",
        uuid.UUID(refund_id),
    )


async def _status_is(db: asyncpg.Connection, refund_id: str, status: str) -> bool:
    return bool((await _refund_row(db, refund_id))["status"] == status)


async def _hold_status(db: asyncpg.Connection, hold_id: str) -> str:
    status: str = await db.fetchval(
        "SELECT status FROM transactions.holds WHERE id = $1", uuid.UUID(hold_id)
    )
    return status


async def _hold_is(db: asyncpg.Connection, hold_id: str, status: str) -> bool:
    return await _hold_status(db, hold_id) == status


async def _amount_refunded(db: asyncpg.Connection, payment_id: str) -> int:
    refunded: int = await db.fetchval(
        "SELECT amount_refunded FROM payments.payments WHERE id = $1", uuid.UUID(payment_id)
    )
    return refunded


async def _ledger(db: asyncpg.Connection, refund_id: str, hold_id: str | None) -> list[str]:
    """The types of the ledger transactions posted for a refund (its debit and reversal)."""
    rows = await db.fetch(
        "SELECT type FROM transactions.ledger_transactions WHERE reference = ANY($1::text[]) "
        "ORDER BY created_at",
        [refund_id, f"refund:{refund_id}"],
    )
    return [row["type"] for row in rows]


async def _reconcile(payment_stack: PaymentStack, headers: dict[str, str]) -> Any:
    response = await payment_stack.client.post(
        "/internal/reconcile", json={"min_age_seconds": 0}, headers=headers
    )
    assert response.status_code == 200, response.text
    return response.json()


async def test_pending_refund_keeps_its_hold_until_stripe_says_succeeded(
    payment_stack, make_user, card, db, service_headers
):
    user = make_user()
    payment = await _credited(payment_stack, user, 1000, card(PENDING_REFUND_CARD))
    created = await payment_stack.refund(user, payment["id"], amount=400)
    assert created.status_code == 201, created.text
    refund = created.json()
    assert refund["status"] == "pending"
    row = await _refund_row(db, refund["id"])
    assert row["stripe_refund_id"]
    # The money is held, not taken: unavailable to spend, not yet counted as refunded.
    assert await _hold_status(db, row["hold_id"]) == "active"
    assert await payment_stack.balance(user) == 600
    assert await _amount_refunded(db, payment["id"]) == 0
    assert await outbox_events(db, "payment.refunded", refund["id"]) == []

    # Reconciliation reads it again from Stripe (still pending) and renews its hold.
    report = await _reconcile(payment_stack, service_headers)
    assert report["holds_renewed"] >= 1
    assert await _status_is(db, refund["id"], "pending")

    # Stripe completes the refund and says so in a signed refund.updated.
    await payment_stack.stripe_update(f"refunds/{row['stripe_refund_id']}", status="succeeded")
    await eventually(lambda: _status_is(db, refund["id"], "succeeded"))
    await eventually(lambda: _hold_is(db, row["hold_id"], "captured"))
    assert await payment_stack.balance(user) == 600
    assert await _amount_refunded(db, payment["id"]) == 400
    assert len(await outbox_events(db, "payment.refunded", refund["id"])) == 2
    assert await _ledger(db, refund["id"], row["hold_id"]) == ["refund"]


async def test_pending_refund_that_fails_releases_its_hold_and_nothing_revives_it(
    payment_stack, make_user, card, db
):
    user = make_user()
    payment = await _credited(payment_stack, user, 1000, card(PENDING_REFUND_CARD))
    refund = (await payment_stack.refund(user, payment["id"], amount=300)).json()
    row = await _refund_row(db, refund["id"])
    stripe_id = row["stripe_refund_id"]
    assert await payment_stack.balance(user) == 700

    await payment_stack.stripe_update(
        f"refunds/{stripe_id}", status="failed", failure_reason="expired_or_canceled_card"
    )
    await eventually(lambda: _status_is(db, refund["id"], "failed"))
    await eventually(lambda: _has_balance(payment_stack, user, 1000))
    assert await _hold_status(db, row["hold_id"]) == "voided"
    assert (await _refund_row(db, refund["id"]))["failure_code"] == "expired_or_canceled_card"
    failed = await outbox_events(db, "payment.refund_failed", refund["id"])
    assert {e["consumer"] for e in failed} == {"transactions", "notifications"}
    assert failed[0]["payload"]["data"]["was_refunded"] is False

    # The same failure again, and a forged success (Stripe says failed): nothing changes.
    stripe_refund = {"id": stripe_id, "object": "refund", "status": "failed"}
    again = await payment_stack.send_event("refund.updated", stripe_refund)
    assert again.json()["outcome"] == "ignored"
    forged = await payment_stack.send_event(
        "refund.updated", {**stripe_refund, "status": "succeeded"}
    )
    assert forged.json()["outcome"] == "ignored"
    # Even Stripe saying succeeded after failed moves nothing: `failed` is final.
    await payment_stack.stripe_update(f"refunds/{stripe_id}", status="succeeded")
    late = await payment_stack.send_event("refund.updated", stripe_refund)
    assert late.json()["outcome"] == "ignored"
    await asyncio.sleep(1.5)  # localstripe's own refund.updated comes about 1 s later
    assert await _status_is(db, refund["id"], "failed")
    assert await outbox_events(db, "payment.refunded", refund["id"]) == []
    assert len(await outbox_events(db, "payment.refund_failed", refund["id"])) == 2
    assert await _amount_refunded(db, payment["id"]) == 0
    assert await payment_stack.balance(user) == 1000
    assert await _ledger(db, refund["id"], row["hold_id"]) == []


async def test_refund_that_fails_after_succeeding_is_credited_back_once(
    payment_stack, make_user, db
):
    user = make_user()
    payment = await _credited(payment_stack, user, 1000)
    refund = (await payment_stack.refund(user, payment["id"], amount=400)).json()
    assert refund["status"] == "succeeded"
    assert await payment_stack.balance(user) == 600
    row = await _refund_row(db, refund["id"])
    stripe_id = row["stripe_refund_id"]

    # Stripe could not put the money on the card after all (Stripe's 4000000000005126 case).
    await payment_stack.stripe_update(
        f"refunds/{stripe_id}", status="failed", failure_reason="lost_or_stolen_card"
    )
    await eventually(lambda: _status_is(db, refund["id"], "failed"))
    await eventually(lambda: _has_balance(payment_stack, user, 1000))
    for _ in range(3):  # Stripe delivers again, under new event ids too
        repeat = await payment_stack.send_event(
            "refund.updated", {"id": stripe_id, "object": "refund"}
        )
        assert repeat.json()["outcome"] == "ignored"
    await asyncio.sleep(1.0)
    assert await payment_stack.balance(user) == 1000
    assert await _ledger(db, refund["id"], row["hold_id"]) == ["refund", "refund_reversal"]
    assert await _amount_refunded(db, payment["id"]) == 0
    failed = await outbox_events(db, "payment.refund_failed", refund["id"])
    assert len(failed) == 2
    assert failed[0]["payload"]["data"]["was_refunded"] is True
    assert failed[0]["payload"]["data"]["failure_code"] == "lost_or_stolen_card"
    # The money is refundable again.
    again = await payment_stack.refund(user, payment["id"], amount=1000)
    assert again.status_code == 201, again.text
    assert await payment_stack.balance(user) == 0


async def test_failure_that_overtakes_the_refunds_own_answer(
    payment_stack, make_user, stripe_client, db, closed_port_url
):
    user = make_user()
    payment = await _credited(payment_stack, user, 1000)
    settings = payment_stack.settings_for(stripe_api_base=closed_port_url)
    key = str(uuid.uuid4())
    async with serve(create_app(settings)) as stripe_down:
        down = await stripe_down.post(
            f"/payments/{payment['id']}/refunds",
            json={"amount": 250},
            headers=payment_stack.headers(user, key),
        )
    assert down.status_code == 503
    refund_id = down.json()["refund_id"]
    row = await _refund_row(db, refund_id)
    assert (row["status"], row["stripe_refund_id"]) == ("pending", None)
    # Stripe did receive the refund; its answer was lost. Then it fails the refund, and its
    # signed refund.updated arrives before the service has heard Stripe's id for it.
    intent_id = await db.fetchval(
        "SELECT stripe_payment_intent_id FROM payments.payments WHERE id = $1",
        uuid.UUID(payment["id"]),
    )
    made = stripe_client.v1.refunds.create(
        {
            "payment_intent": intent_id,
            "amount": 250,
            "metadata": {"refund_id": refund_id, "payment_id": payment["id"]},
        }
    )
    await payment_stack.stripe_update(f"refunds/{made.id}", status="failed")
    await eventually(lambda: _status_is(db, refund_id, "failed"))
    await eventually(lambda: _has_balance(payment_stack, user, 1000))
    assert await _hold_status(db, row["hold_id"]) == "voided"

    # The refund's own answer comes now (the client's retry): it changes nothing more.
    retry = await payment_stack.client.post(
        f"/payments/{payment['id']}/refunds",
        json={"amount": 250},
        headers=payment_stack.headers(user, key),
    )
    assert retry.status_code == 409
    assert retry.json()["type"] == "refund_failed"
    assert retry.headers["Idempotent-Replayed"] == "true"
    assert len(await outbox_events(db, "payment.refund_failed", refund_id)) == 2
    assert await outbox_events(db, "payment.refunded", refund_id) == []
    await asyncio.sleep(0.5)
    assert await payment_stack.balance(user) == 1000
    assert await _ledger(db, refund_id, row["hold_id"]) == []


async def test_forged_success_for_a_failed_payment_is_refused(
    payment_stack, make_user, card, db, stripe_client
):
    user = make_user()
    declined = await payment_stack.pay(user, amount=800, payment_method=card("4000000000000341"))
    assert declined.status_code == 402
    payment_id = declined.json()["payment_id"]
    intents = stripe_client.v1.payment_intents.list({"limit": 100}).data
    [intent_id] = [i.id for i in intents if i.to_dict()["metadata"].get("payment_id") == payment_id]
    assert stripe_client.v1.payment_intents.retrieve(intent_id).status != "succeeded"
    # Correctly signed, naming the real PaymentIntent, claiming it succeeded: Stripe says not.
    forged = {
        "id": intent_id,
        "object": "payment_intent",
        "status": "succeeded",
        "amount": 800,
        "currency": "usd",
        "metadata": {"payment_id": payment_id},
    }
    response = await payment_stack.send_event("payment_intent.succeeded", forged)
    assert response.status_code == 200
    read = await payment_stack.client.get(
        f"/payments/{payment_id}", headers=payment_stack.headers(user)
    )
    assert read.json()["status"] == "failed"
    assert await outbox_events(db, "payment.succeeded", payment_id) == []
    await asyncio.sleep(0.5)
    assert await payment_stack.balance(user) == 0


HOLD_TTL_SECONDS = 2
"""The wallet's hold TTL in the outage test: far shorter than the outage."""


@pytest.fixture
async def short_hold_wallet(service_settings, closed_port_url) -> AsyncIterator[str]:
    """The transactions service whose holds live HOLD_TTL_SECONDS, swept five times a second."""
    settings = service_settings(
        "transactions",
        settings_cls=TransactionsSettings,
        notifications_url=closed_port_url,
        hold_ttl_seconds=HOLD_TTL_SECONDS,
        hold_sweep_interval_seconds=0.2,
        outbox_poll_interval_seconds=0.1,
    )
    async with serve_http(create_transactions_app(settings)) as url:
        yield url


async def test_hold_outlives_a_stripe_outage_longer_than_its_ttl(
    payment_stack, make_user, db, short_hold_wallet, closed_port_url, service_headers, stripe_client
):
    user = make_user()
    payment = await _credited(payment_stack, user, 1000)
    # The payment service while Stripe is down (its API base a closed port), reconciling every
    # 0.3 s; refunds younger than RECONCILE_MIN_AGE_SECONDS are only kept, not retried.
    settings = payment_stack.settings_for(
        stripe_api_base=closed_port_url,
        transactions_url=short_hold_wallet,
        reconcile_interval_seconds=0.3,
        reconcile_min_age_seconds=3600.0,
    )
    async with serve(create_app(settings)) as stripe_down:
        down = await stripe_down.post(
            f"/payments/{payment['id']}/refunds",
            json={"amount": 400},
            headers=payment_stack.headers(user, str(uuid.uuid4())),
        )
        assert down.status_code == 503
        refund_id = down.json()["refund_id"]
        hold_id = (await _refund_row(db, refund_id))["hold_id"]
        # Three times the hold's TTL, with the expiry sweep running all along.
        await asyncio.sleep(3 * HOLD_TTL_SECONDS)
        assert await _hold_status(db, hold_id) == "active"
        # The held money stays out of what the wallet can spend.
        assert await payment_stack.balance(user) == 600

    # Stripe is back: the reconciler completes the refund, through the same hold.
    report = await _reconcile(payment_stack, service_headers)
    assert report["refunds_settled"] >= 1
    assert await _status_is(db, refund_id, "succeeded")
    assert await _hold_status(db, hold_id) == "captured"
    assert await payment_stack.balance(user) == 600
    charge = await db.fetchval(
        "SELECT stripe_charge_id FROM payments.payments WHERE id = $1", uuid.UUID(payment["id"])
    )
    assert [r.amount for r in stripe_client.v1.refunds.list({"charge": charge}).data] == [400]
    await asyncio.sleep(0.5)
    assert await payment_stack.balance(user) == 600
