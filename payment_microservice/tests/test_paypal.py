"""PayPal top-ups through the payment service, against the PayPal stand-in and the real wallet.

The buyer's part is played as a browser would: the approval page is opened from the payment's
`next_action` and its Approve or Cancel form is submitted. The stand-in delivers its signed
webhooks to the service as PayPal does; the tests hold or reorder them where that matters.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import httpx

from micropay_testing.apps import serve
from micropay_testing.cognito import CognitoUser
from micropay_testing.paypal import buyer_chooses, query
from micropay_testing.polling import eventually
from payment_microservice.main import create_app
from payment_microservice.tests.helpers import PaymentStack, outbox_events
from stack.paypal_server import CERT_NAME

RETURN_URL = "https://app.micropay.example/top-up/paypal/return"
CANCEL_URL = "https://app.micropay.example/top-up/paypal/cancel"


async def _start(
    stack: PaymentStack, user: CognitoUser, amount: int = 1000, key: str | None = None
) -> dict[str, Any]:
    response = await stack.client.post(
        "/payments",
        json={
            "amount": amount,
            "currency": "USD",
            "provider": "paypal",
            "return_url": RETURN_URL,
            "cancel_url": CANCEL_URL,
        },
        headers=stack.headers(user, key or str(uuid.uuid4())),
    )
    assert response.status_code == 201, response.text
    payment: dict[str, Any] = response.json()
    return payment


async def _confirm(stack: PaymentStack, user: CognitoUser, payment_id: str) -> httpx.Response:
    return await stack.client.post(f"/payments/{payment_id}/confirm", headers=stack.headers(user))


async def _read(stack: PaymentStack, user: CognitoUser, payment_id: str) -> dict[str, Any]:
    response = await stack.client.get(f"/payments/{payment_id}", headers=stack.headers(user))
    assert response.status_code == 200, response.text
    found: dict[str, Any] = response.json()
    return found


async def _status_is(stack: PaymentStack, user: CognitoUser, payment_id: str, status: str) -> bool:
    return bool((await _read(stack, user, payment_id))["status"] == status)


def _approve_url(payment: dict[str, Any]) -> str:
    assert payment["next_action"]["type"] == "redirect_to_url"
    return str(payment["next_action"]["redirect_to_url"]["url"])


async def _row(db: asyncpg.Connection, payment_id: str) -> Any:
    return await db.fetchrow(
        "SELECT provider, paypal_order_id, paypal_capture_id, amount_refunded "
        "FROM payments.payments WHERE id = $1",
        uuid.UUID(payment_id),
    )


async def _standin(stack: PaymentStack, path: str, body: dict[str, Any] | None = None) -> Any:
    async with httpx.AsyncClient(base_url=stack.paypal_url, timeout=30) as client:
        response = await client.post(path, json=body or {})
    assert response.status_code == 200, response.text
    return response.json()


@asynccontextmanager
async def _webhooks_held(stack: PaymentStack, order: str = "sent") -> AsyncIterator[None]:
    """PayPal's deliveries to the service are held in the block, then sent in `order`."""
    await _standin(stack, f"/_standin/webhooks/{stack.paypal_webhook_id}/pause")
    try:
        yield
    finally:
        await _standin(
            stack, f"/_standin/webhooks/{stack.paypal_webhook_id}/resume", {"order": order}
        )


async def _paypal_events(db: asyncpg.Connection, order_id: str) -> list[Any]:
    return await db.fetch(  # type: ignore[no-any-return]
        "SELECT id, type, outcome FROM payments.paypal_events "
        "WHERE payload->'resource'->>'id' = $1 "
        "OR payload->'resource'->'supplementary_data'->'related_ids'->>'order_id' = $1",
        order_id,
    )


async def test_approve_then_confirm_credits_the_wallet_once(payment_stack, make_user, db):
    user = make_user()
    payment = await _start(payment_stack, user, 1250)
    assert (payment["provider"], payment["status"]) == ("paypal", "requires_action")
    assert payment["client_secret"] is None
    row = await _row(db, payment["id"])
    assert _approve_url(payment).endswith(f"token={row['paypal_order_id']}")

    not_yet = await _confirm(payment_stack, user, payment["id"])
    assert not_yet.status_code == 409
    assert not_yet.json()["type"] == "payment_not_approved"

    back = await buyer_chooses(_approve_url(payment), "approve")
    assert str(back).startswith(RETURN_URL)
    assert query(back)["token"] == row["paypal_order_id"]
    assert query(back)["PayerID"]

    confirmed = await _confirm(payment_stack, user, payment["id"])
    assert confirmed.status_code == 200, confirmed.text
    assert confirmed.json()["status"] == "succeeded"
    again = await _confirm(payment_stack, user, payment["id"])
    assert again.json()["status"] == "succeeded"

    await eventually(lambda: payment_stack.balance(user), within=20)
    assert await payment_stack.balance(user) == 1250
    # PayPal's own webhooks (the approval, the capture) arrive too and change nothing.
    events = await eventually(lambda: _events_at_least(db, row["paypal_order_id"], 2), within=20)
    assert {e["type"] for e in events} == {"CHECKOUT.ORDER.APPROVED", "PAYMENT.CAPTURE.COMPLETED"}
    assert len(await outbox_events(db, "payment.succeeded", payment["id"])) > 0
    assert (
        len({e["event_id"] for e in await outbox_events(db, "payment.succeeded", payment["id"])})
        == 1
    )
    assert await payment_stack.balance(user) == 1250
    assert (await _row(db, payment["id"]))["paypal_capture_id"]


async def _events_at_least(db: asyncpg.Connection, order_id: str, count: int) -> list[Any] | None:
    events = await _paypal_events(db, order_id)
    return events if len(events) >= count else None


async def test_approval_alone_is_captured_by_the_webhook(payment_stack, make_user, db):
    user = make_user()
    payment = await _start(payment_stack, user, 800)
    await buyer_chooses(_approve_url(payment), "approve")
    await eventually(lambda: _status_is(payment_stack, user, payment["id"], "succeeded"))
    await eventually(lambda: _has(payment_stack, user, 800))
    # The client confirms late: nothing more happens.
    late = await _confirm(payment_stack, user, payment["id"])
    assert late.json()["status"] == "succeeded"
    assert await payment_stack.balance(user) == 800


async def _has(stack: PaymentStack, user: CognitoUser, amount: int) -> bool:
    return await stack.balance(user) == amount


async def test_cancel_at_paypal_cancels_the_payment(payment_stack, make_user, db):
    user = make_user()
    payment = await _start(payment_stack, user, 900)
    back = await buyer_chooses(_approve_url(payment), "cancel")
    assert str(back).startswith(CANCEL_URL)
    canceled = await payment_stack.client.post(
        f"/payments/{payment['id']}/cancel", headers=payment_stack.headers(user)
    )
    assert canceled.status_code == 200, canceled.text
    assert (canceled.json()["status"], canceled.json()["next_action"]) == ("canceled", None)
    again = await payment_stack.client.post(
        f"/payments/{payment['id']}/cancel", headers=payment_stack.headers(user)
    )
    assert again.json()["status"] == "canceled"
    assert (await _confirm(payment_stack, user, payment["id"])).json()["status"] == "canceled"
    assert await payment_stack.balance(user) == 0
    assert await outbox_events(db, "payment.succeeded", payment["id"]) == []
    # A canceled top-up does not count against the day's limit.
    limits = await payment_stack.client.get("/payments/limits", headers=payment_stack.headers(user))
    usd = next(a for a in limits.json()["top_ups"] if a["currency"] == "USD")
    assert usd["topped_up_today"] == 0


async def test_a_card_payment_is_neither_confirmed_nor_canceled_here(payment_stack, make_user):
    user = make_user()
    card = await payment_stack.pay(user, amount=500)
    assert card.json()["provider"] == "stripe"
    confirm = await _confirm(payment_stack, user, card.json()["id"])
    assert (confirm.status_code, confirm.json()["type"]) == (409, "payment_not_confirmable")
    cancel = await payment_stack.client.post(
        f"/payments/{card.json()['id']}/cancel", headers=payment_stack.headers(user)
    )
    assert (cancel.status_code, cancel.json()["type"]) == (409, "payment_not_cancelable")


async def test_body_must_fit_the_provider(payment_stack, make_user):
    user = make_user()
    bodies = [
        {"amount": 500, "currency": "USD", "provider": "paypal"},
        {
            "amount": 500,
            "currency": "USD",
            "provider": "paypal",
            "return_url": RETURN_URL,
            "cancel_url": CANCEL_URL,
            "payment_method": "pm_card_visa",
        },
        {
            "amount": 500,
            "currency": "USD",
            "return_url": RETURN_URL,
            "cancel_url": CANCEL_URL,
            "payment_method": "pm_card_visa",
        },
        {
            "amount": 500,
            "currency": "USD",
            "provider": "paypal",
            "return_url": "javascript:x",
            "cancel_url": CANCEL_URL,
        },
        {"amount": 500, "currency": "USD", "provider": "bitcoin", "payment_method": "pm_x"},
    ]
    for body in bodies:
        response = await payment_stack.client.post(
            "/payments", json=body, headers=payment_stack.headers(user, str(uuid.uuid4()))
        )
        assert response.status_code == 422, (body, response.text)


async def test_declined_capture_fails_the_payment(payment_stack, make_user, db):
    user = make_user()
    payment = await _start(payment_stack, user, 666)  # the stand-in declines 6.66
    await buyer_chooses(_approve_url(payment), "approve")
    await eventually(lambda: _status_is(payment_stack, user, payment["id"], "failed"))
    confirmed = await _confirm(payment_stack, user, payment["id"])
    assert confirmed.status_code == 200
    assert (confirmed.json()["status"], confirmed.json()["failure_code"]) == (
        "failed",
        "capture_declined",
    )
    assert await payment_stack.balance(user) == 0
    assert len(await outbox_events(db, "payment.failed", payment["id"])) > 0
    assert await outbox_events(db, "payment.succeeded", payment["id"]) == []


async def test_pending_capture_is_completed_later_by_webhook(payment_stack, make_user, db):
    user = make_user()
    payment = await _start(payment_stack, user, 777)  # the stand-in holds 7.77 PENDING
    async with _webhooks_held(payment_stack, order="drop"):
        await buyer_chooses(_approve_url(payment), "approve")
        confirmed = await _confirm(payment_stack, user, payment["id"])
    assert confirmed.json()["status"] == "processing"
    assert await payment_stack.balance(user) == 0
    row = await _row(db, payment["id"])
    await _standin(payment_stack, f"/_standin/captures/{row['paypal_capture_id']}/complete")
    await eventually(lambda: _status_is(payment_stack, user, payment["id"], "succeeded"))
    await eventually(lambda: _has(payment_stack, user, 777))


async def test_out_of_order_and_duplicate_webhooks_credit_once(payment_stack, make_user, db):
    user = make_user()
    payment = await _start(payment_stack, user, 777)
    # Approved, pending, then completed: delivered newest first, each answered before the next.
    async with _webhooks_held(payment_stack, order="reverse"):
        await buyer_chooses(_approve_url(payment), "approve")
        confirmed = await _confirm(payment_stack, user, payment["id"])
        assert confirmed.json()["status"] == "processing"
        row = await _row(db, payment["id"])
        await _standin(payment_stack, f"/_standin/captures/{row['paypal_capture_id']}/complete")
    events = await _paypal_events(db, row["paypal_order_id"])
    assert {e["type"] for e in events} == {
        "CHECKOUT.ORDER.APPROVED",
        "PAYMENT.CAPTURE.PENDING",
        "PAYMENT.CAPTURE.COMPLETED",
    }
    assert await _status_is(payment_stack, user, payment["id"], "succeeded")
    await eventually(lambda: _has(payment_stack, user, 777))

    # PayPal delivers every event again (as it does when it missed our 200): duplicates.
    async with httpx.AsyncClient(base_url=payment_stack.paypal_url, timeout=30) as client:
        token = await _paypal_token(client)
        for event in events:
            resent = await client.post(
                f"/v1/notifications/webhooks-events/{event['id']}/resend",
                json={"webhook_ids": [payment_stack.paypal_webhook_id]},
                headers=token,
            )
            assert resent.status_code == 202
    await eventually(lambda: _deliveries_answered(payment_stack, [e["id"] for e in events], 2))
    assert (
        len({e["event_id"] for e in await outbox_events(db, "payment.succeeded", payment["id"])})
        == 1
    )
    assert len(await _paypal_events(db, row["paypal_order_id"])) == 3
    assert await payment_stack.balance(user) == 777


async def _paypal_token(client: httpx.AsyncClient) -> dict[str, str]:
    from micropay_testing.paypal import CLIENT

    response = await client.post(
        "/v1/oauth2/token", data={"grant_type": "client_credentials"}, auth=CLIENT
    )
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


async def _deliveries_answered(stack: PaymentStack, event_ids: list[str], times: int) -> bool:
    async with httpx.AsyncClient(base_url=stack.paypal_url) as client:
        deliveries = (await client.get("/_standin/deliveries")).json()["deliveries"]
    return all(
        sum(1 for d in deliveries if d["event_id"] == event_id and d["status"] == 200) >= times
        for event_id in event_ids
    )


async def _signed_delivery(stack: PaymentStack, order_id: str) -> tuple[dict[str, Any], int]:
    """A real event of the order, as the stand-in lists it, and how many times it was sent."""
    async with httpx.AsyncClient(base_url=stack.paypal_url) as client:
        token = await _paypal_token(client)
        listed = await client.get("/v1/notifications/webhooks-events", headers=token)
    event = next(e for e in listed.json()["events"] if e["resource"].get("id") == order_id)
    return event, 0


async def test_forged_and_stale_webhooks_are_refused_and_change_nothing(
    payment_stack, make_user, db
):
    user = make_user()
    payment = await _start(payment_stack, user, 1500)
    async with _webhooks_held(payment_stack, order="drop"):
        await buyer_chooses(_approve_url(payment), "approve")
    row = await _row(db, payment["id"])
    event, _ = await _signed_delivery(payment_stack, row["paypal_order_id"])
    body = json.dumps(event, separators=(",", ":")).encode()
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    headers = {
        "Content-Type": "application/json",
        "PAYPAL-AUTH-ALGO": "SHA256withRSA",
        "PAYPAL-CERT-URL": f"{payment_stack.paypal_url}/v1/notifications/certs/{CERT_NAME}",
        "PAYPAL-TRANSMISSION-ID": str(uuid.uuid4()),
        "PAYPAL-TRANSMISSION-TIME": now,
        "PAYPAL-TRANSMISSION-SIG": "Zm9yZ2Vk" * 43,
    }
    url = "/payments/webhooks/paypal"
    forged = await payment_stack.client.post(url, content=body, headers=headers)
    assert (forged.status_code, forged.json()["type"]) == (400, "invalid_signature")
    stale = await payment_stack.client.post(
        url, content=body, headers={**headers, "PAYPAL-TRANSMISSION-TIME": "2026-01-01T00:00:00Z"}
    )
    assert (stale.status_code, stale.json()["type"]) == (400, "invalid_signature")
    unsigned = await payment_stack.client.post(
        url, content=body, headers={"Content-Type": "application/json"}
    )
    assert unsigned.status_code == 400
    not_json = await payment_stack.client.post(url, content=b"{", headers=headers)
    assert not_json.status_code == 400
    assert await _paypal_events(db, row["paypal_order_id"]) == []
    assert await _status_is(payment_stack, user, payment["id"], "requires_action")
    assert await payment_stack.balance(user) == 0

    # The genuine event, replayed by PayPal, is taken once and captures the order.
    async with httpx.AsyncClient(base_url=payment_stack.paypal_url) as client:
        resent = await client.post(
            f"/v1/notifications/webhooks-events/{event['id']}/resend",
            json={},
            headers=await _paypal_token(client),
        )
    assert resent.status_code == 202
    await eventually(lambda: _status_is(payment_stack, user, payment["id"], "succeeded"))
    await eventually(lambda: _has(payment_stack, user, 1500))


async def test_partial_full_over_and_failed_refunds(payment_stack, make_user, db):
    user = make_user()
    payment = await _start(payment_stack, user, 1000)
    await buyer_chooses(_approve_url(payment), "approve")
    assert (await _confirm(payment_stack, user, payment["id"])).json()["status"] == "succeeded"
    await eventually(lambda: _has(payment_stack, user, 1000))

    partial = await payment_stack.refund(user, payment["id"], amount=300)
    assert partial.status_code == 201, partial.text
    assert (partial.json()["amount"], partial.json()["status"]) == (300, "succeeded")
    assert await payment_stack.balance(user) == 700

    failing = await payment_stack.refund(user, payment["id"], amount=113)  # PayPal refuses 1.13
    assert failing.status_code == 409, failing.text
    assert failing.json()["type"] == "refund_failed"
    assert failing.json()["code"] == "refund_failed_insufficient_funds"
    assert await payment_stack.balance(user) == 700  # the hold was voided

    over = await payment_stack.refund(user, payment["id"], amount=701)
    assert (over.status_code, over.json()["type"]) == (409, "refund_exceeds_payment")
    assert over.json()["refundable"] == 700

    rest = await payment_stack.refund(user, payment["id"])
    assert rest.status_code == 201, rest.text
    assert (rest.json()["amount"], rest.json()["status"]) == (700, "succeeded")
    assert await payment_stack.balance(user) == 0
    row = await _row(db, payment["id"])
    assert row["amount_refunded"] == 1000
    refunds = await db.fetch(
        "SELECT status, paypal_refund_id FROM payments.refunds WHERE payment_id = $1 "
        "ORDER BY created_at",
        uuid.UUID(payment["id"]),
    )
    assert [r["status"] for r in refunds] == ["succeeded", "failed", "succeeded"]
    assert refunds[0]["paypal_refund_id"]
    assert refunds[2]["paypal_refund_id"]
    # PayPal's PAYMENT.CAPTURE.REFUNDED webhooks for our own refunds change nothing.
    await eventually(
        lambda: _refund_events(db, [r["paypal_refund_id"] for r in (refunds[0], refunds[2])])
    )
    refunded = await outbox_events(db, "payment.refunded", partial.json()["id"])
    assert len({e["event_id"] for e in refunded}) == 1
    assert (await _row(db, payment["id"]))["amount_refunded"] == 1000
    nothing_left = await payment_stack.refund(user, payment["id"], amount=1)
    assert nothing_left.status_code == 409


async def _refund_events(db: asyncpg.Connection, refund_ids: list[str]) -> bool:
    rows = await db.fetch(
        "SELECT id FROM payments.paypal_events WHERE payload->'resource'->>'id' = ANY($1)",
        refund_ids,
    )
    return len(rows) == len(refund_ids)


async def test_a_reversal_at_paypal_debits_the_wallet(payment_stack, make_user, db):
    user = make_user()
    payment = await _start(payment_stack, user, 600)
    await buyer_chooses(_approve_url(payment), "approve")
    await _confirm(payment_stack, user, payment["id"])
    await eventually(lambda: _has(payment_stack, user, 600))
    row = await _row(db, payment["id"])
    await _standin(payment_stack, f"/_standin/captures/{row['paypal_capture_id']}/reverse")
    await eventually(lambda: _has(payment_stack, user, 0))
    refunds = await db.fetch(
        "SELECT origin, amount, status FROM payments.refunds WHERE payment_id = $1",
        uuid.UUID(payment["id"]),
    )
    assert [(r["origin"], r["amount"], r["status"]) for r in refunds] == [
        ("paypal", 600, "succeeded")
    ]


async def test_reconciliation_captures_an_approved_order_whose_webhooks_were_lost(
    payment_stack, make_user, db, service_headers
):
    user = make_user()
    payment = await _start(payment_stack, user, 450)
    async with _webhooks_held(payment_stack, order="drop"):
        await buyer_chooses(_approve_url(payment), "approve")
    assert await _status_is(payment_stack, user, payment["id"], "requires_action")
    report = await payment_stack.client.post(
        "/internal/reconcile", json={"min_age_seconds": 0}, headers=service_headers
    )
    assert report.status_code == 200, report.text
    assert report.json()["payments_settled"] >= 1
    assert await _status_is(payment_stack, user, payment["id"], "succeeded")
    await eventually(lambda: _has(payment_stack, user, 450))


async def test_same_key_replays_the_same_paypal_payment(payment_stack, make_user, db):
    user = make_user()
    key = str(uuid.uuid4())
    first = await _start(payment_stack, user, 300, key=key)
    again = await _start(payment_stack, user, 300, key=key)
    assert first["id"] == again["id"]
    assert _approve_url(first) == _approve_url(again)


async def test_without_a_paypal_app_paypal_is_not_offered(payment_stack, make_user):
    user = make_user()
    settings = payment_stack.settings_for(paypal_client_id="", paypal_client_secret="x")
    async with serve(create_app(settings)) as client:
        body = {
            "amount": 500,
            "currency": "USD",
            "provider": "paypal",
            "return_url": RETURN_URL,
            "cancel_url": CANCEL_URL,
        }
        started = await client.post(
            "/payments", json=body, headers=payment_stack.headers(user, str(uuid.uuid4()))
        )
        assert (started.status_code, started.json()["type"]) == (422, "provider_not_offered")
        hook = await client.post("/payments/webhooks/paypal", content=b"{}")
        assert (hook.status_code, hook.json()["type"]) == (400, "invalid_signature")
        card = await client.post(
            "/payments",
            json={"amount": 500, "currency": "USD", "payment_method": "pm_card_visa"},
            headers=payment_stack.headers(user, str(uuid.uuid4())),
        )
        assert card.status_code == 201, card.text


async def test_paypal_down_leaves_the_payment_processing_for_the_reconciler(
    payment_stack, make_user, db, closed_port_url, service_headers
):
    user = make_user()
    key = str(uuid.uuid4())
    body = {
        "amount": 700,
        "currency": "USD",
        "provider": "paypal",
        "return_url": RETURN_URL,
        "cancel_url": CANCEL_URL,
    }
    settings = payment_stack.settings_for(
        paypal_api_base=closed_port_url, paypal_max_network_retries=0
    )
    async with serve(create_app(settings)) as client:
        down = await client.post("/payments", json=body, headers=payment_stack.headers(user, key))
    assert (down.status_code, down.json()["type"]) == (503, "payment_provider_unavailable")
    payment_id = down.json()["payment_id"]
    assert await _status_is(payment_stack, user, payment_id, "processing")
    assert (await _row(db, payment_id))["paypal_order_id"] is None

    report = await payment_stack.client.post(
        "/internal/reconcile", json={"min_age_seconds": 0}, headers=service_headers
    )
    assert report.status_code == 200, report.text
    payment = await _read(payment_stack, user, payment_id)
    assert payment["status"] == "requires_action"
    # The client's retry with the same key finds the same payment and the same order.
    retried = await payment_stack.client.post(
        "/payments", json=body, headers=payment_stack.headers(user, key)
    )
    assert retried.json()["id"] == payment_id
    assert _approve_url(retried.json()) == _approve_url(payment)
    await buyer_chooses(_approve_url(payment), "approve")
    await eventually(lambda: _status_is(payment_stack, user, payment_id, "succeeded"))
    await eventually(lambda: _has(payment_stack, user, 700))
