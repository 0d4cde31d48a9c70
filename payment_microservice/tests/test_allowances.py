"""`GET /transactions/limits` shows the payment service's top-up allowance beside the transfer
allowances: asked over HTTP with the transactions service's own account, at an internal route
that refuses every other caller; without the payment service the transfer part still answers."""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from micropay_common.events import UserRegistered
from micropay_testing.apps import serve_http
from micropay_testing.cognito import CognitoUser
from micropay_testing.events import event_envelope
from micropay_testing.http import bearer
from micropay_testing.polling import eventually
from payment_microservice.main import create_app
from payment_microservice.tests.helpers import PaymentStack
from transactions_microservice.main import create_app as create_transactions_app
from transactions_microservice.settings import TransactionsSettings

TOP_UPS_PER_DAY = 10_000
TRANSFERS_PER_DAY = 2_000
TRANSFER_MAX = 1_500
ROUTE = "/internal/limits/top-ups"


@dataclass
class Allowances:
    """The payment service with a daily top-up limit, and a wallet replica that asks it."""

    payment: httpx.AsyncClient
    wallet: httpx.AsyncClient
    stack: PaymentStack

    async def top_up(self, user: CognitoUser, amount: int, currency: str = "USD") -> None:
        response = await self.payment.post(
            "/payments",
            json={"amount": amount, "currency": currency, "payment_method": "pm_card_visa"},
            headers=self.stack.headers(user, str(uuid.uuid4())),
        )
        assert response.status_code == 201, response.text
        assert response.json()["status"] == "succeeded"

    async def limits(self, user: CognitoUser) -> dict[str, Any]:
        response = await self.wallet.get("/transactions/limits", headers=bearer(user.access_token))
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body


def transactions_settings(service_settings, payment_url: str, **overrides: Any) -> Any:
    """A transactions replica on the test database whose payment service is at `payment_url`."""
    values: dict[str, Any] = {
        "payment_url": payment_url,
        "transfer_limit_per_transaction": f"USD:{TRANSFER_MAX}",
        "transfer_limit_per_day": f"USD:{TRANSFERS_PER_DAY}",
        # The package's wallet replica relays and sweeps; this one only answers.
        "outbox_poll_interval_seconds": 3600,
        "hold_sweep_interval_seconds": 3600,
        **overrides,
    }
    return service_settings("transactions", settings_cls=TransactionsSettings, **values)


@pytest.fixture(scope="module")
async def allowances(payment_stack: PaymentStack, service_settings) -> AsyncIterator[Allowances]:
    payment_settings = payment_stack.settings_for(top_up_limit_per_day=f"USD:{TOP_UPS_PER_DAY}")
    async with (
        serve_http(create_app(payment_settings)) as payment_url,
        serve_http(
            create_transactions_app(transactions_settings(service_settings, payment_url))
        ) as wallet_url,
        httpx.AsyncClient(base_url=payment_url, timeout=60) as payment,
        httpx.AsyncClient(base_url=wallet_url, timeout=60) as wallet,
    ):
        yield Allowances(payment, wallet, payment_stack)


def next_utc_midnight() -> datetime:
    now = datetime.now(UTC)
    return now.replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=1)


async def test_limits_show_the_top_ups_left_and_the_transfers_left(
    allowances, make_user, service_account_headers
):
    user, friend = make_user(), make_user()
    await allowances.top_up(user, 3_000)
    await allowances.top_up(user, 1_200)
    await allowances.top_up(user, 700, currency="JPY")  # no daily top-up limit in JPY
    registered = event_envelope(UserRegistered(user_id=friend.sub, email=friend.username))
    delivered = await allowances.wallet.post(
        "/internal/events", json=registered, headers=service_account_headers["auth"]
    )
    assert delivered.status_code == 200, delivered.text
    await eventually(lambda: _available(allowances, user, 4_200))
    sent = await allowances.wallet.post(
        "/transactions/transfers",
        json={"to_email": friend.username, "amount": 500, "currency": "USD"},
        headers={**bearer(user.access_token), "Idempotency-Key": str(uuid.uuid4())},
    )
    assert sent.status_code == 201, sent.text

    limits = await allowances.limits(user)

    (top_ups,) = limits["top_ups"]
    assert top_ups == {
        "currency": "USD",
        "per_day": TOP_UPS_PER_DAY,
        "topped_up_today": 4_200,
        "remaining_today": TOP_UPS_PER_DAY - 4_200,
        "resets_at": top_ups["resets_at"],
    }
    assert datetime.fromisoformat(top_ups["resets_at"]) == next_utc_midnight()
    (transfers,) = [a for a in limits["transfers"] if a["currency"] == "USD"]
    assert (transfers["per_transaction"], transfers["per_day"]) == (TRANSFER_MAX, TRANSFERS_PER_DAY)
    assert (transfers["sent_today"], transfers["remaining_today"]) == (500, TRANSFERS_PER_DAY - 500)
    # One schema, one count: the payment service answers the user the same top-up part.
    direct = await allowances.payment.get("/payments/limits", headers=bearer(user.access_token))
    assert direct.status_code == 200, direct.text
    assert direct.json() == {"top_ups": limits["top_ups"]}
    # Another user's top-ups are not counted against this one.
    (fresh,) = (await allowances.limits(friend))["top_ups"]
    assert (fresh["topped_up_today"], fresh["remaining_today"]) == (0, TOP_UPS_PER_DAY)


async def _available(allowances: Allowances, user: CognitoUser, amount: int) -> bool:
    response = await allowances.wallet.get(
        "/transactions/balance", headers=bearer(user.access_token)
    )
    balances = {b["currency"]: b["available"] for b in response.json()["balances"]}
    return bool(balances.get("USD") == amount)


def unavailable_reasons(caplog: pytest.LogCaptureFixture) -> list[str]:
    """Why the wallet replica left the top-up part out, as it logged it."""
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "micropay.transactions.limits"
        and r.getMessage().startswith("top-up allowances unavailable")
    ]


async def test_without_the_payment_service_the_transfer_part_still_answers(
    service_settings, closed_port_url, make_user, caplog
):
    user = make_user()
    settings = transactions_settings(service_settings, closed_port_url)
    async with (
        serve_http(create_transactions_app(settings)) as wallet_url,
        httpx.AsyncClient(base_url=wallet_url, timeout=60) as wallet,
    ):
        with caplog.at_level(logging.WARNING, logger="micropay.transactions.limits"):
            response = await wallet.get("/transactions/limits", headers=bearer(user.access_token))

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["top_ups"] is None
    assert unavailable_reasons(caplog) == [
        f"top-up allowances unavailable: {closed_port_url} is not reachable."
    ]
    (usd,) = [a for a in body["transfers"] if a["currency"] == "USD"]
    assert (usd["per_day"], usd["sent_today"], usd["remaining_today"]) == (
        TRANSFERS_PER_DAY,
        0,
        TRANSFERS_PER_DAY,
    )


async def test_a_payment_service_that_refuses_the_caller_leaves_top_ups_unknown(
    allowances, service_settings, aws, make_user, caplog
):
    # A misconfigured replica signing in as another service: the payment service says 403.
    stranger = aws.service_accounts["notifications"]
    settings = transactions_settings(
        service_settings,
        str(allowances.payment.base_url).rstrip("/"),
        service_account_username=stranger["username"],
        service_account_password=stranger["password"],
    )
    user = make_user()
    async with (
        serve_http(create_transactions_app(settings)) as wallet_url,
        httpx.AsyncClient(base_url=wallet_url, timeout=60) as wallet,
    ):
        with caplog.at_level(logging.WARNING, logger="micropay.transactions.limits"):
            response = await wallet.get("/transactions/limits", headers=bearer(user.access_token))

    assert response.status_code == 200, response.text
    assert response.json()["top_ups"] is None
    assert unavailable_reasons(caplog) == ["top-up allowances unavailable: payment answered 403"]


async def test_the_internal_route_answers_only_the_transactions_account(
    allowances, make_user, service_account_headers
):
    user = make_user()
    await allowances.top_up(user, 2_500)
    others = {
        **{name: h for name, h in service_account_headers.items() if name != "transactions"},
        "user": bearer(user.access_token),
        "admin": bearer(make_user(groups=("admins",)).access_token),
    }
    assert set(others) == {"auth", "payment", "notifications", "user", "admin"}

    for caller, headers in others.items():
        refused = await allowances.payment.get(ROUTE, params={"user_id": user.sub}, headers=headers)
        assert refused.status_code == 403, (caller, refused.text)
        assert refused.headers["content-type"].startswith("application/problem+json")
        assert refused.json()["type"] == "caller_not_allowed", caller
    anonymous = await allowances.payment.get(ROUTE, params={"user_id": user.sub})
    assert anonymous.status_code == 401

    answer = await allowances.payment.get(
        ROUTE, params={"user_id": user.sub}, headers=service_account_headers["transactions"]
    )
    assert answer.status_code == 200, answer.text
    (usd,) = answer.json()["top_ups"]
    assert (usd["topped_up_today"], usd["remaining_today"]) == (2_500, TOP_UPS_PER_DAY - 2_500)

    missing = await allowances.payment.get(ROUTE, headers=service_account_headers["transactions"])
    assert missing.status_code == 422, missing.text
    assert missing.headers["content-type"].startswith("application/problem+json")
