"""A new user can be paid at once: the answer that completes a registration comes after the
transactions service has been offered its `user.registered`.

The real auth app relays over HTTP to the real transactions app; both poll their outboxes once
an hour, so only the wake-up at commit and the registration's wait explain a transfer that
finds the new user. The notifications service never answers: the relay sends each consumer's
events apart, so a stuck consumer does not hold up the wallet.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest

from auth_microservice.main import build_app
from auth_microservice.settings import AuthSettings
from micropay_testing.apps import serve, serve_http, silent_server
from micropay_testing.cognito import CognitoUser
from micropay_testing.events import event_envelope
from micropay_testing.http import bearer
from micropay_testing.processes import free_port
from stack.launcher import LOCAL_SIGNUP_LIMITS
from transactions_microservice.main import create_app

PASSWORD = "Correct-Horse-9"


@pytest.fixture(scope="module")
async def ledger(idle_transactions_settings: Any) -> AsyncIterator[tuple[httpx.AsyncClient, str]]:
    """The transactions service on a real port (the auth relay posts to it), and a client."""
    async with (
        serve_http(create_app(idle_transactions_settings)) as url,
        httpx.AsyncClient(base_url=url, timeout=10) as client,
    ):
        yield client, url


@pytest.fixture(scope="module")
def auth(
    service_settings: Callable[..., Any], ledger: tuple[httpx.AsyncClient, str]
) -> Callable[..., Any]:
    """Start the auth service relaying to the ledger, with or without confirmation codes."""
    nowhere = f"http://127.0.0.1:{free_port()}"

    @asynccontextmanager
    async def running(*, auto_confirm: bool) -> AsyncIterator[httpx.AsyncClient]:
        async with silent_server() as stuck:
            settings = service_settings(
                "auth",
                settings_cls=AuthSettings,
                auth_auto_confirm=auto_confirm,
                transactions_url=ledger[1],
                notifications_url=stuck,
                payment_url=nowhere,
                outbox_poll_interval_seconds=3600,
                http_timeout_seconds=30,
                **{name.lower(): value for name, value in LOCAL_SIGNUP_LIMITS.items()},
            )
            async with serve(build_app(settings)) as client:
                yield client

    return running


async def funded_sender(
    ledger: httpx.AsyncClient, make_user: Callable[..., CognitoUser], producer_headers: Any
) -> CognitoUser:
    """A user the ledger knows, with 100.00 USD."""
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
    return sender


@pytest.mark.parametrize("auto_confirm", [True, False], ids=["sign-up", "confirmation"])
async def test_the_first_transfer_to_a_user_who_just_signed_up_is_accepted(
    auto_confirm, auth, ledger, admin, make_user, producer_headers
):
    client, _ = ledger
    sender = await funded_sender(client, make_user, producer_headers)
    email = f"new-{uuid.uuid4().hex[:10]}@example.com"
    async with auth(auto_confirm=auto_confirm) as signup:
        registered = await signup.post(
            "/auth/register", json={"email": email, "password": PASSWORD}
        )
        assert registered.status_code == 201, registered.text
        assert registered.json()["confirmed"] is auto_confirm
        if not auto_confirm:
            # moto takes any code.
            confirmed = await signup.post("/auth/confirm", json={"email": email, "code": "123456"})
            assert confirmed.status_code == 200, confirmed.text
        # The answer came once the event had reached the ledger.
        status = await admin.fetchval(
            "SELECT status FROM auth.outbox WHERE consumer = 'transactions'"
            " AND event_type = 'user.registered' AND payload->'data'->>'email' = $1",
            email,
        )
        assert status == "delivered"

        sent = await client.post(
            "/transactions/transfers",
            json={"to_email": email, "amount": 100, "currency": "USD"},
            headers={**bearer(sender.access_token), "Idempotency-Key": str(uuid.uuid4())},
        )
        assert sent.status_code == 201, sent.text
