"""A logged-out access token is refused by every service on its own port, within one second.

The four real apps (and a second replica of the transactions service) run against the one test
database, each on its own role, as they are deployed: nothing tells them of a logout but what
the auth service commits (the deny-list row and its NOTIFY). The one-second deadline is the
bound the issue sets ("refused by every service within one second"); the mechanism delivers at
commit, and reads the table every half second when a notification is lost.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import asyncpg
import httpx
import pytest

from auth_microservice.main import build_app
from auth_microservice.settings import AuthSettings
from micropay_testing.apps import serve
from micropay_testing.http import bearer
from micropay_testing.polling import eventually
from micropay_testing.processes import free_port
from notifications_microservice.main import create_app as create_notifications_app
from payment_microservice.main import create_app as create_payment_app
from payment_microservice.settings import PaymentSettings
from stack.launcher import LOCAL_SIGNUP_LIMITS
from transactions_microservice.main import create_app as create_transactions_app

PASSWORD = "Correct-Horse-9"
DEADLINE_SECONDS = 1.0
"""The issue's bound from the logout's 204 to a refusal at every service."""

PROTECTED = {
    "auth": "/auth/me",
    "payment": "/payments",
    "transactions": "/transactions/balance",
    "transactions-b": "/transactions/balance",
    "notifications": "/notifications",
}
"""A route of each app that any signed-in user may call (the caller's own data)."""


@pytest.fixture(scope="module")
async def apps(
    service_settings: Callable[..., Any],
    idle_transactions_settings: Any,
    moto_notifications_settings: Any,
    localstripe_url: str,
) -> AsyncIterator[dict[str, httpx.AsyncClient]]:
    """Every service's real app, plus a second transactions replica; their jobs idle."""
    nowhere = f"http://127.0.0.1:{free_port()}"
    idle = {
        "transactions_url": nowhere,
        "notifications_url": nowhere,
        "payment_url": nowhere,
        "outbox_poll_interval_seconds": 3600,
    }
    auth = build_app(
        service_settings(
            "auth",
            settings_cls=AuthSettings,
            auth_auto_confirm=True,
            # Every in-process client is 127.0.0.1, whose sign-ups the whole run shares.
            **{name.lower(): value for name, value in LOCAL_SIGNUP_LIMITS.items()},
            **idle,
        )
    )
    payment = create_payment_app(
        service_settings(
            "payment",
            settings_cls=PaymentSettings,
            stripe_api_key="sk_test_local",
            stripe_api_base=localstripe_url,
            stripe_webhook_secret="whsec_test",
            reconcile_interval_seconds=3600.0,
            **idle,
        )
    )
    transactions = create_transactions_app(idle_transactions_settings)
    # A second replica, named apart so that its connections can be told from the first's.
    replica = create_transactions_app(
        idle_transactions_settings.model_copy(update={"service_name": "transactions-b"})
    )
    notifications = create_notifications_app(moto_notifications_settings, background_jobs=())
    async with (
        serve(auth) as auth_client,
        serve(payment) as payment_client,
        serve(transactions) as transactions_client,
        serve(replica) as replica_client,
        serve(notifications) as notifications_client,
    ):
        yield {
            "auth": auth_client,
            "payment": payment_client,
            "transactions": transactions_client,
            "transactions-b": replica_client,
            "notifications": notifications_client,
        }


async def signed_in(auth: httpx.AsyncClient) -> str:
    """Register a user (auto-confirmed) and sign in through the auth service; the access token."""
    email = f"logout-{uuid.uuid4().hex[:12]}@example.com"
    registered = await auth.post("/auth/register", json={"email": email, "password": PASSWORD})
    assert registered.status_code == 201, registered.text
    answer = await auth.post("/auth/login", json={"email": email, "password": PASSWORD})
    assert answer.status_code == 200, answer.text
    token: str = answer.json()["access_token"]
    return token


async def refused_within(
    client: httpx.AsyncClient, path: str, token: str, seconds: float
) -> httpx.Response:
    """Ask until the token is refused or `seconds` have passed; the last answer."""
    deadline = time.monotonic() + seconds
    while True:
        answer = await client.get(path, headers=bearer(token))
        if answer.status_code != 200 or time.monotonic() >= deadline:
            return answer
        await asyncio.sleep(0.01)


def assert_revoked(name: str, answer: httpx.Response) -> None:
    """A 401 problem saying the token was revoked."""
    assert answer.status_code == 401, (name, answer.status_code, answer.text)
    assert answer.headers["content-type"] == "application/problem+json", name
    assert answer.json()["type"] == "token_revoked", (name, answer.text)
    assert answer.headers["www-authenticate"] == "Bearer", name


async def test_every_service_and_every_replica_refuses_a_logged_out_token_within_a_second(apps):
    token = await signed_in(apps["auth"])
    for name, path in PROTECTED.items():
        answer = await apps[name].get(path, headers=bearer(token))
        assert answer.status_code == 200, (name, answer.text)

    logout = await apps["auth"].post("/auth/logout", headers=bearer(token))
    assert logout.status_code == 204, logout.text
    logged_out_at = time.monotonic()

    # All polled at once: each must refuse within a second of the 204, not of its turn.
    answers = await asyncio.gather(
        *(
            refused_within(apps[name], path, token, DEADLINE_SECONDS)
            for name, path in PROTECTED.items()
        )
    )
    for name, answer in zip(PROTECTED, answers, strict=True):
        assert_revoked(name, answer)
    assert time.monotonic() - logged_out_at < DEADLINE_SECONDS + 0.5
    # The auth service refuses at once: the replica that signed the user out knows it first.
    assert_revoked("auth", await apps["auth"].get("/auth/me", headers=bearer(token)))
    verify = await apps["auth"].get("/auth/verify", headers=bearer(token))
    assert_revoked("auth verify", verify)


async def test_a_replica_that_could_not_listen_refuses_users_until_it_has_read_the_logout(
    apps, admin: asyncpg.Connection, service_account_headers
):
    replica = apps["transactions-b"]
    path = PROTECTED["transactions-b"]
    token = await signed_in(apps["auth"])
    assert (await replica.get(path, headers=bearer(token))).status_code == 200

    # The replica's LISTEN connection is cut, and its role may not connect again for now.
    await admin.execute("ALTER ROLE transactions_service CONNECTION LIMIT 0")
    try:
        killed = await admin.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE application_name = 'transactions-b-listener'"
        )
        assert killed == 1
        logout = await apps["auth"].post("/auth/logout", headers=bearer(token))
        assert logout.status_code == 204, logout.text
        # The notification went nowhere; the replica that cannot read refuses users (503)
        # rather than trust what it last read, and still serves the service accounts.
        stale = await refused_within(replica, path, token, 5.0)
        assert stale.status_code in (401, 503), stale.text
        other = await signed_in(apps["auth"])
        unavailable = await eventually(
            lambda: _status_is(replica, path, other, 503), within=10, interval=0.05
        )
        assert unavailable.headers["content-type"] == "application/problem+json"
        assert unavailable.json()["type"] == "revocation_state_unavailable"
        assert unavailable.headers["retry-after"] == "2"
        check = await replica.get(
            "/internal/ledger/check", headers=service_account_headers["payment"]
        )
        assert check.status_code not in (401, 503), check.text
        # The first replica kept its connection and knew at once.
        assert_revoked("transactions", await apps["transactions"].get(path, headers=bearer(token)))
    finally:
        await admin.execute("ALTER ROLE transactions_service CONNECTION LIMIT -1")

    # Connected again, its first read is of the whole table: the logout it never heard of.
    answer = await eventually(
        lambda: _status_is(replica, path, token, 401), within=15, interval=0.05
    )
    assert_revoked("transactions-b", answer)
    assert (await replica.get(path, headers=bearer(other))).status_code == 200


async def _status_is(
    client: httpx.AsyncClient, path: str, token: str, status: int
) -> httpx.Response | None:
    answer = await client.get(path, headers=bearer(token))
    return answer if answer.status_code == status else None
