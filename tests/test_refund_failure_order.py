"""A failed refund reaches the wallet in either order: credited back once, never debited alone.

The payment service publishes `payment.refunded` when Stripe says a refund succeeded and
`payment.refund_failed` when Stripe later fails it; the outbox relay retries each on its own,
so the transactions service may receive them in either order, and each more than once (new
deliveries of one event id are dropped by the inbox; the effects are idempotent besides).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import httpx
import pytest

from micropay_common.events import (
    Event,
    PaymentRefunded,
    PaymentRefundFailed,
    PaymentSucceeded,
    UserRegistered,
)
from micropay_testing.apps import serve
from micropay_testing.events import event_envelope
from micropay_testing.http import bearer
from transactions_microservice.main import create_app as create_transactions_app


@pytest.fixture(scope="module")
async def wallet(idle_transactions_settings: Any) -> AsyncIterator[httpx.AsyncClient]:
    """The transactions service, its background jobs parked."""
    async with serve(create_transactions_app(idle_transactions_settings)) as client:
        yield client


class Payer:
    """A user with a funded wallet, and the payment service's side of their refunds."""

    def __init__(self, wallet: httpx.AsyncClient, headers: dict[str, dict[str, str]], user: Any):
        self.wallet = wallet
        self.headers = headers
        self.user = user

    async def deliver(self, event: Event, *, event_id: uuid.UUID | None = None) -> None:
        """Post an event from its producer's account, as the outbox relay does."""
        account = "auth" if isinstance(event, UserRegistered) else "payment"
        response = await self.wallet.post(
            "/internal/events",
            json=event_envelope(event, event_id=event_id),
            headers=self.headers[account],
        )
        assert response.status_code == 200, response.text

    async def hold(self, amount: int, refund_id: str) -> str:
        """The hold the payment service places for a refund."""
        response = await self.wallet.post(
            "/internal/holds",
            json={
                "user_id": self.user.sub,
                "amount": amount,
                "currency": "USD",
                "reference": f"refund:{refund_id}",
            },
            headers=self.headers["payment"],
        )
        assert response.status_code == 201, response.text
        return str(response.json()["id"])

    async def available(self) -> int:
        """The wallet's available USD."""
        response = await self.wallet.get(
            "/transactions/balance", headers=bearer(self.user.access_token)
        )
        balances = {b["currency"]: b["available"] for b in response.json()["balances"]}
        return int(balances.get("USD", 0))


@pytest.fixture
async def payer(wallet, make_user, service_account_headers) -> Payer:
    """A registered user whose wallet was topped up with 1000 USD."""
    user = make_user()
    payer = Payer(wallet, service_account_headers, user)
    await payer.deliver(UserRegistered(user_id=user.sub, email=user.username))
    await payer.deliver(
        PaymentSucceeded(
            payment_id=str(uuid.uuid4()), user_id=user.sub, amount=1000, currency="USD"
        )
    )
    assert await payer.available() == 1000
    return payer


async def _ledger(admin: asyncpg.Connection, refund_id: str) -> list[str]:
    rows = await admin.fetch(
        "SELECT type FROM transactions.ledger_transactions WHERE reference = ANY($1::text[]) "
        "ORDER BY type",
        [refund_id, f"refund:{refund_id}"],
    )
    return [row["type"] for row in rows]


def _events(payer: Payer, refund_id: str, hold_id: str | None) -> tuple[Event, Event]:
    common: dict[str, Any] = {
        "payment_id": str(uuid.uuid4()),
        "refund_id": refund_id,
        "user_id": payer.user.sub,
        "amount": 400,
        "currency": "USD",
        "hold_id": hold_id,
    }
    return (
        PaymentRefunded(**common),
        PaymentRefundFailed(**common, was_refunded=True, failure_code="declined"),
    )


@pytest.mark.parametrize("with_hold", [True, False], ids=["held", "made-at-stripe"])
@pytest.mark.parametrize("failure_first", [True, False], ids=["failure-first", "refund-first"])
async def test_failure_after_success_credits_back_once_in_either_order(
    payer, admin, with_hold: bool, failure_first: bool
):
    refund_id = str(uuid.uuid4())
    hold_id = await payer.hold(400, refund_id) if with_hold else None
    refunded, failed = _events(payer, refund_id, hold_id)
    order = [failed, refunded] if failure_first else [refunded, failed]
    for event in order:
        event_id = uuid.uuid4()
        await payer.deliver(event, event_id=event_id)
        # The relay delivers again (the inbox drops it); the same fact under a new id too.
        await payer.deliver(event, event_id=event_id)
        await payer.deliver(event)
    assert await payer.available() == 1000
    assert await _ledger(admin, refund_id) == ["refund", "refund_reversal"]
    if hold_id is not None:
        status = await admin.fetchval(
            "SELECT status FROM transactions.holds WHERE id = $1", uuid.UUID(hold_id)
        )
        assert status == "captured"


async def test_a_refund_that_never_succeeded_only_gives_its_hold_back(payer, admin):
    refund_id = str(uuid.uuid4())
    hold_id = await payer.hold(300, refund_id)
    assert await payer.available() == 700
    failed = PaymentRefundFailed(
        payment_id=str(uuid.uuid4()),
        refund_id=refund_id,
        user_id=payer.user.sub,
        amount=300,
        currency="USD",
        hold_id=hold_id,
        was_refunded=False,
        failure_code="canceled",
    )
    for _ in range(2):
        await payer.deliver(failed)
    assert await payer.available() == 1000
    assert await _ledger(admin, refund_id) == []
    status = await admin.fetchval(
        "SELECT status FROM transactions.holds WHERE id = $1", uuid.UUID(hold_id)
    )
    assert status == "voided"
