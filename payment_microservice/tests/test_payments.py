"""POST /payments against localstripe and the real wallet: success, 3-D Secure, declines, reads."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable
from typing import Any

from micropay_testing.polling import eventually
from payment_microservice.tests.helpers import outbox_events

DECLINED_AT_CHARGE = "4000000000000341"
NEEDS_3DS = "4000002760003184"


async def test_top_up_succeeds_and_credits_the_wallet_once(payment_stack, make_user, db):
    user = make_user()
    response = await payment_stack.pay(user, amount=1250, description="first top-up")
    assert response.status_code == 201, response.text
    payment = response.json()
    assert payment["status"] == "succeeded"
    assert (payment["amount"], payment["currency"], payment["amount_refunded"]) == (1250, "USD", 0)
    assert payment["description"] == "first top-up"
    assert payment["next_action"] is None
    assert payment["client_secret"] is None

    assert await eventually(lambda: _equals(payment_stack.balance(user), 1250))
    # localstripe's own signed payment_intent.succeeded arrives about a second later.
    row = await eventually(
        lambda: db.fetchrow(
            "SELECT e.outcome FROM payments.stripe_events e JOIN payments.payments p "
            "ON p.stripe_payment_intent_id = e.payload->'data'->'object'->>'id' "
            "WHERE p.id = $1 AND e.type = 'payment_intent.succeeded'",
            uuid.UUID(payment["id"]),
        )
    )
    assert row["outcome"] == "applied"
    events = await outbox_events(db, "payment.succeeded", payment["id"])
    assert sorted(e["consumer"] for e in events) == ["notifications", "transactions"]
    assert len({e["event_id"] for e in events}) == 1
    await asyncio.sleep(0.5)
    assert await payment_stack.balance(user) == 1250
    metrics = (await payment_stack.client.get("/metrics")).text
    assert (
        'micropay_stripe_request_duration_seconds_count{operation="create_payment_intent",'
        'outcome="ok"}' in metrics
    )


async def _equals(awaitable: Awaitable[int], expected: int) -> bool:
    return await awaitable == expected


async def test_same_key_and_body_replays_the_payment_without_a_second_charge(
    payment_stack, make_user, stripe_client
):
    user = make_user()
    key = str(uuid.uuid4())
    first = await payment_stack.pay(user, amount=700, key=key)
    again = await payment_stack.pay(user, amount=700, key=key)
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json()
    assert again.headers["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first.headers
    intents = stripe_client.v1.payment_intents.list({"limit": 100})
    charged = [
        i for i in intents.data if i.to_dict()["metadata"].get("payment_id") == first.json()["id"]
    ]
    assert len(charged) == 1
    assert await eventually(lambda: _equals(payment_stack.balance(user), 700))


async def test_same_key_with_another_body_is_a_conflict(payment_stack, make_user):
    user = make_user()
    key = str(uuid.uuid4())
    assert (await payment_stack.pay(user, amount=800, key=key)).status_code == 201
    other = await payment_stack.pay(user, amount=900, key=key)
    assert other.status_code == 409
    assert other.headers["content-type"] == "application/problem+json"
    assert other.json()["type"] == "idempotency_conflict"


async def test_keys_belong_to_their_user(payment_stack, make_user):
    key = str(uuid.uuid4())
    first = await payment_stack.pay(make_user(), amount=600, key=key)
    second = await payment_stack.pay(make_user(), amount=600, key=key)
    assert first.status_code == second.status_code == 201
    assert first.json()["id"] != second.json()["id"]


async def test_idempotency_key_is_required(payment_stack, make_user):
    user = make_user()
    response = await payment_stack.client.post(
        "/payments",
        json={"amount": 1000, "currency": "USD", "payment_method": "pm_card_visa"},
        headers=payment_stack.headers(user),
    )
    assert response.status_code == 400
    assert response.json()["type"] == "idempotency_key_required"


async def test_amount_and_currency_limits_are_422_and_create_nothing(payment_stack, make_user, db):
    user = make_user()
    cases: list[tuple[dict[str, Any], str]] = [
        ({"amount": 49}, "amount_out_of_range"),
        ({"amount": 1_000_001}, "amount_out_of_range"),
        ({"currency": "CHF"}, "unsupported_currency"),
        ({"amount": 0}, "validation_error"),
        ({"amount": 10.5}, "validation_error"),
        ({"amount": 1000.0}, "validation_error"),
        ({"amount": "1000"}, "validation_error"),
        ({"amount": True}, "validation_error"),
        ({"currency": "US"}, "validation_error"),
        ({"payment_method": ""}, "validation_error"),
    ]
    for change, problem in cases:
        body: dict[str, Any] = {
            "amount": 1000,
            "currency": "USD",
            "payment_method": "pm_card_visa",
            **change,
        }
        response = await payment_stack.client.post(
            "/payments", json=body, headers=payment_stack.headers(user, str(uuid.uuid4()))
        )
        assert response.status_code == 422, (change, response.text)
        assert response.json()["type"] == problem, change
    assert (
        await db.fetchval("SELECT count(*) FROM payments.payments WHERE user_id = $1", user.sub)
        == 0
    )


async def test_lower_case_currency_and_zero_decimal_currency(payment_stack, make_user):
    user = make_user()
    response = await payment_stack.pay(user, amount=500, currency="jpy")
    assert response.status_code == 201, response.text
    assert response.json()["currency"] == "JPY"
    assert await eventually(lambda: _equals(payment_stack.balance(user, "JPY"), 500))


async def test_declined_card_is_402_and_leaves_the_balance_alone(
    payment_stack, make_user, card, db
):
    user = make_user()
    response = await payment_stack.pay(user, amount=1500, payment_method=card(DECLINED_AT_CHARGE))
    assert response.status_code == 402
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["type"] == "card_declined"
    assert problem["code"] == "card_declined"
    assert "decline_code" in problem
    payment_id = problem["payment_id"]

    read = await payment_stack.client.get(
        f"/payments/{payment_id}", headers=payment_stack.headers(user)
    )
    assert read.json()["status"] == "failed"
    assert read.json()["failure_code"] == "card_declined"
    failed = await outbox_events(db, "payment.failed", payment_id)
    assert [e["consumer"] for e in failed] == ["notifications"]
    assert await outbox_events(db, "payment.succeeded", payment_id) == []
    # localstripe's payment_intent.payment_failed webhook changes nothing more.
    await asyncio.sleep(1.5)
    assert len(await outbox_events(db, "payment.failed", payment_id)) == 1
    assert await payment_stack.balance(user) == 0


async def test_declined_payment_replays_its_402(payment_stack, make_user, card):
    user = make_user()
    key = str(uuid.uuid4())
    method = card(DECLINED_AT_CHARGE)
    first = await payment_stack.pay(user, payment_method=method, key=key)
    again = await payment_stack.pay(user, payment_method=method, key=key)
    assert first.status_code == again.status_code == 402
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json()["payment_id"] == first.json()["payment_id"]


async def test_unknown_payment_method_fails_with_a_problem(payment_stack, make_user):
    user = make_user()
    response = await payment_stack.pay(user, payment_method="pm_does_not_exist")
    assert response.status_code == 402
    assert response.json()["type"] == "payment_failed"


async def test_three_d_secure_needs_action_then_credits_when_authenticated(
    payment_stack, make_user, card, localstripe_url
):
    user = make_user()
    response = await payment_stack.pay(user, amount=2000, payment_method=card(NEEDS_3DS))
    assert response.status_code == 201, response.text
    payment = response.json()
    assert payment["status"] == "requires_action"
    assert payment["next_action"]["type"] == "use_stripe_sdk"
    assert payment["client_secret"].startswith("pi_")
    assert await payment_stack.balance(user) == 0

    # What Stripe.js does in the customer's browser once 3-D Secure succeeds.
    intent_id = payment["client_secret"].split("_secret_")[0]
    import httpx

    async with httpx.AsyncClient() as browser:
        done = await browser.post(
            f"{localstripe_url}/v1/payment_intents/{intent_id}/_authenticate",
            data={"client_secret": payment["client_secret"], "success": "true", "key": "pk_test"},
        )
    assert done.status_code == 200, done.text

    # localstripe's signed payment_intent.succeeded webhook settles and credits it.
    async def settled():
        read = await payment_stack.client.get(
            f"/payments/{payment['id']}", headers=payment_stack.headers(user)
        )
        return read.json()["status"] == "succeeded"

    await eventually(settled)
    assert await eventually(lambda: _equals(payment_stack.balance(user), 2000))


async def test_reads_are_the_callers_own_and_admins_see_all(payment_stack, make_user):
    owner, stranger, admin = make_user(), make_user(), make_user(groups=("admins",))
    payment = (await payment_stack.pay(owner, amount=1100)).json()
    path = f"/payments/{payment['id']}"

    mine = await payment_stack.client.get(path, headers=payment_stack.headers(owner))
    assert mine.status_code == 200
    assert mine.json() == payment
    hidden = await payment_stack.client.get(path, headers=payment_stack.headers(stranger))
    assert hidden.status_code == 404
    assert hidden.json()["type"] == "payment_not_found"
    seen = await payment_stack.client.get(path, headers=payment_stack.headers(admin))
    assert seen.status_code == 200

    listed = await payment_stack.client.get("/payments", headers=payment_stack.headers(stranger))
    assert listed.json() == {"data": [], "has_more": False}
    forbidden = await payment_stack.client.get(
        "/payments", params={"user_id": owner.sub}, headers=payment_stack.headers(stranger)
    )
    assert forbidden.status_code == 403
    by_admin = await payment_stack.client.get(
        "/payments", params={"user_id": owner.sub}, headers=payment_stack.headers(admin)
    )
    assert [p["id"] for p in by_admin.json()["data"]] == [payment["id"]]
    anonymous = await payment_stack.client.get(path)
    assert anonymous.status_code == 401


async def test_list_pages_newest_first_with_a_cursor(payment_stack, make_user):
    user = make_user()
    ids = []
    for amount in (500, 600, 700):
        ids.append((await payment_stack.pay(user, amount=amount)).json()["id"])
    headers = payment_stack.headers(user)
    first = (await payment_stack.client.get("/payments?limit=2", headers=headers)).json()
    assert [p["id"] for p in first["data"]] == ids[::-1][:2]
    assert first["has_more"] is True
    second = (
        await payment_stack.client.get(
            f"/payments?limit=2&starting_after={first['data'][-1]['id']}", headers=headers
        )
    ).json()
    assert [p["id"] for p in second["data"]] == [ids[0]]
    assert second["has_more"] is False
    bad = await payment_stack.client.get("/payments?limit=101", headers=headers)
    assert bad.status_code == 422


async def test_a_cursor_that_is_not_one_of_your_payments_is_a_400(payment_stack, make_user):
    owner, stranger = make_user(), make_user()
    theirs = (await payment_stack.pay(owner, amount=500)).json()["id"]
    for cursor in (theirs, str(uuid.uuid4())):
        answer = await payment_stack.client.get(
            "/payments", params={"starting_after": cursor}, headers=payment_stack.headers(stranger)
        )
        assert answer.status_code == 400, answer.text
        assert answer.headers["content-type"] == "application/problem+json"
        assert answer.json()["type"] == "invalid_cursor"
