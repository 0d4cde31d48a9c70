"""Money follows a proven email: a sign-up the auth service has not seen confirmed is unknown to
the ledger, so nobody can open a wallet on, or be sent money at, an address they do not own.

The real auth app (auto-confirm off, as in AWS) and the real transactions app; what the auth
service's outbox holds for the transactions service is delivered to it as its relay would.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import asyncpg
import httpx
import pytest

from auth_microservice.main import build_app
from auth_microservice.settings import AuthSettings
from micropay_testing.apps import serve
from micropay_testing.cognito import CognitoUser
from micropay_testing.events import event_envelope
from micropay_testing.http import bearer
from micropay_testing.processes import free_port
from stack.launcher import LOCAL_SIGNUP_LIMITS
from transactions_microservice.main import create_app

PASSWORD = "Correct-Horse-9"


@pytest.fixture(scope="module")
def nowhere() -> str:
    """A port nothing listens on: the relays keep their events for the test to deliver."""
    return f"http://127.0.0.1:{free_port()}"


@pytest.fixture(scope="module")
async def auth(service_settings: Callable[..., Any], nowhere: str) -> AsyncIterator[Any]:
    """The auth service as deployed in AWS: every email confirmed by its code."""
    settings = service_settings(
        "auth",
        settings_cls=AuthSettings,
        auth_auto_confirm=False,
        transactions_url=nowhere,
        notifications_url=nowhere,
        payment_url=nowhere,
        outbox_poll_interval_seconds=3600,
        # Every test client is 127.0.0.1, as on a laptop.
        **{name.lower(): value for name, value in LOCAL_SIGNUP_LIMITS.items()},
    )
    async with serve(build_app(settings)) as client:
        yield client


@pytest.fixture(scope="module")
async def ledger(idle_transactions_settings: Any) -> AsyncIterator[Any]:
    """The transactions service."""
    async with serve(create_app(idle_transactions_settings)) as client:
        yield client


async def relay_to_ledger(
    admin: asyncpg.Connection,
    ledger: httpx.AsyncClient,
    producer_headers: Callable[[str], dict[str, str]],
    user_id: str,
) -> list[str]:
    """Deliver the user's events the auth outbox holds for transactions; their types."""
    rows = await admin.fetch(
        "SELECT payload FROM auth.outbox WHERE consumer = 'transactions'"
        " AND payload->'data'->>'user_id' = $1 ORDER BY id",
        user_id,
    )
    types = []
    for row in rows:
        event = json.loads(row["payload"])
        answer = await ledger.post(
            "/internal/events", json=event, headers=producer_headers(event["type"])
        )
        assert answer.status_code == 200, answer.text
        types.append(event["type"])
    return types


async def send(ledger: httpx.AsyncClient, sender: CognitoUser, to_email: str) -> httpx.Response:
    """Transfer 1.00 USD from the sender to an email."""
    return await ledger.post(
        "/transactions/transfers",
        json={"to_email": to_email, "amount": 100, "currency": "USD"},
        headers={**bearer(sender.access_token), "Idempotency-Key": str(uuid.uuid4())},
    )


async def test_an_unconfirmed_sign_up_gets_no_wallet_and_no_money_until_confirmed(
    auth, ledger, admin, make_user, producer_headers
):
    sender = make_user()
    for event_type, data in (
        ("user.registered", {"user_id": sender.sub, "email": sender.username}),
        (
            "payment.succeeded",
            {
                "payment_id": f"pay_{uuid.uuid4().hex[:16]}",
                "user_id": sender.sub,
                "amount": 10_000,
                "currency": "USD",
            },
        ),
    ):
        answer = await ledger.post(
            "/internal/events",
            json=event_envelope(event_type, data),
            headers=producer_headers(event_type),
        )
        assert answer.status_code == 200, answer.text

    # Someone signs up with an address they do not own, and never confirms it.
    email = f"not-mine-{uuid.uuid4().hex[:10]}@example.com"
    signed_up = await auth.post("/auth/register", json={"email": email, "password": PASSWORD})
    assert signed_up.status_code == 201, signed_up.text
    user_id = signed_up.json()["user_id"]

    assert await relay_to_ledger(admin, ledger, producer_headers, user_id) == []
    assert (
        await admin.fetchval(
            "SELECT count(*) FROM transactions.accounts WHERE user_id = $1", user_id
        )
        == 0
    )
    refused = await send(ledger, sender, email)
    unknown = await send(ledger, sender, f"nobody-{uuid.uuid4().hex}@example.com")
    assert refused.status_code == unknown.status_code == 422, refused.text
    assert refused.json()["type"] == unknown.json()["type"] == "recipient_unavailable"

    # The owner confirms with the emailed code (moto takes any): now the address receives.
    for _ in range(2):
        confirmed = await auth.post("/auth/confirm", json={"email": email, "code": "123456"})
        assert confirmed.status_code == 200, confirmed.text
    assert await relay_to_ledger(admin, ledger, producer_headers, user_id) == ["user.registered"]
    sent = await send(ledger, sender, email)
    assert sent.status_code == 201, sent.text
