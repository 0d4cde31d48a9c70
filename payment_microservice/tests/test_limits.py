"""The daily top-up limit, exact under concurrent requests, and the 3-D Secure flag that
`payment.succeeded` carries to the wallet."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from micropay_testing.apps import serve_http
from micropay_testing.polling import eventually
from payment_microservice.main import create_app
from payment_microservice.tests.helpers import PaymentStack, outbox_events

DAILY = 10_000
DECLINED_AT_CHARGE = "4000000000000341"
NEEDS_3DS = "4000002760003184"


@pytest.fixture(scope="module")
async def limited(payment_stack: PaymentStack) -> AsyncIterator[httpx.AsyncClient]:
    """The payment service with a small daily top-up limit in USD (none in JPY)."""
    settings = payment_stack.settings_for(top_up_limit_per_day=f"USD:{DAILY}")
    async with (
        serve_http(create_app(settings)) as url,
        httpx.AsyncClient(base_url=url, timeout=60) as client,
    ):
        yield client


async def pay(
    client: httpx.AsyncClient,
    stack: PaymentStack,
    user,
    amount: int,
    currency: str = "USD",
    payment_method: str = "pm_card_visa",
) -> httpx.Response:
    return await client.post(
        "/payments",
        json={"amount": amount, "currency": currency, "payment_method": payment_method},
        headers=stack.headers(user, str(uuid.uuid4())),
    )


def next_utc_midnight() -> datetime:
    now = datetime.now(UTC)
    return now.replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=1)


async def test_concurrent_top_ups_never_take_the_day_above_the_limit(
    limited, payment_stack, make_user, db
):
    user = make_user()

    responses = await asyncio.gather(*(pay(limited, payment_stack, user, 3_000) for _ in range(8)))

    outcome = Counter((r.status_code, r.json().get("type")) for r in responses)
    assert outcome == {(201, None): 3, (422, "limit_exceeded"): 5}, outcome
    refused = next(r.json() for r in responses if r.status_code == 422)
    assert refused["limit_kind"] == "top_up_per_day"
    assert (refused["limit"], refused["remaining"], refused["currency"]) == (DAILY, 1_000, "USD")
    assert datetime.fromisoformat(refused["resets_at"]) == next_utc_midnight()
    # A refused top-up creates no payment and charges no card.
    assert (
        await db.fetchval("SELECT count(*) FROM payments.payments WHERE user_id = $1", user.sub)
        == 3
    )
    # The rest of the day's allowance, to the unit; then nothing more in USD, but JPY is free.
    assert (await pay(limited, payment_stack, user, 1_000)).status_code == 201
    assert (await pay(limited, payment_stack, user, 50)).json()["type"] == "limit_exceeded"
    assert (await pay(limited, payment_stack, user, 5_000, currency="JPY")).status_code == 201

    limits = await limited.get("/payments/limits", headers=payment_stack.headers(user))
    assert limits.status_code == 200, limits.text
    (usd,) = limits.json()["top_ups"]
    assert (usd["currency"], usd["per_day"], usd["topped_up_today"], usd["remaining_today"]) == (
        "USD",
        DAILY,
        DAILY,
        0,
    )


async def test_a_declined_top_up_does_not_use_the_allowance(
    limited, payment_stack, make_user, card
):
    user = make_user()
    declined = await pay(
        limited, payment_stack, user, 6_000, payment_method=card(DECLINED_AT_CHARGE)
    )
    assert declined.status_code == 402, declined.text

    assert (await pay(limited, payment_stack, user, DAILY)).status_code == 201


async def test_succeeded_says_whether_3ds_authenticated_the_payment(
    payment_stack, make_user, card, localstripe_url, db
):
    user = make_user()
    plain = (await payment_stack.pay(user, amount=1_000)).json()
    challenged = (
        await payment_stack.pay(user, amount=2_000, payment_method=card(NEEDS_3DS))
    ).json()
    assert challenged["status"] == "requires_action"
    async with httpx.AsyncClient() as browser:  # what Stripe.js does once 3-D Secure succeeds
        done = await browser.post(
            f"{localstripe_url}/v1/payment_intents/{challenged['client_secret'].split('_secret_')[0]}"
            "/_authenticate",
            data={
                "client_secret": challenged["client_secret"],
                "success": "true",
                "key": "pk_test",
            },
        )
    assert done.status_code == 200, done.text

    async def succeeded_event(payment_id: str):
        events = await outbox_events(db, "payment.succeeded", payment_id)
        return events or None

    (authenticated, *_) = await eventually(lambda: succeeded_event(challenged["id"]))
    (not_authenticated, *_) = await eventually(lambda: succeeded_event(plain["id"]))
    assert authenticated["payload"]["data"]["three_d_secure"] is True
    assert not_authenticated["payload"]["data"]["three_d_secure"] is False
    assert await db.fetchval(
        "SELECT three_d_secure FROM payments.payments WHERE id = $1", uuid.UUID(challenged["id"])
    )
