"""Cognito failures: the caller's faults are 4xx, Cognito's are 503 with Retry-After, never 500.

Unreachable Cognito is a real closed port. Throttling, 5xx, stalls, wrong or expired codes and
resent codes come from the fault proxy in front of moto (`cognito_faults.py`), because moto
cannot produce them.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from auth_microservice.tests.cognito_faults import CognitoFaults, Fault
from auth_microservice.tests.helpers import (
    AuthClient,
    assert_problem,
    login,
    new_email,
    register,
    signed_in,
)
from micropay_testing.http import bearer
from micropay_testing.processes import free_port

FAST_FAILING = {"cognito_max_attempts": 1, "cognito_timeout_seconds": 1.0}


def assert_unavailable(answer: httpx.Response) -> None:
    assert_problem(answer, 503, "identity_provider_unavailable")
    assert answer.headers["retry-after"] == "5"


@pytest.fixture(scope="module")
async def unreachable(auth_client: AuthClient) -> AsyncIterator[httpx.AsyncClient]:
    """The service with AWS_ENDPOINT_URL on a port where nothing listens."""
    async with auth_client(
        aws_endpoint_url=f"http://127.0.0.1:{free_port()}", **FAST_FAILING
    ) as running:
        yield running


@pytest.fixture(scope="module")
async def faulty(
    auth_client: AuthClient, cognito_faults: CognitoFaults
) -> AsyncIterator[httpx.AsyncClient]:
    """The service talking to Cognito through the fault proxy."""
    async with auth_client(aws_endpoint_url=cognito_faults.url, **FAST_FAILING) as running:
        yield running


async def failures_of(admin_db: Any, email: str) -> int:
    count: int = await admin_db.fetchval(
        "SELECT count(*) FROM auth.login_failures WHERE email = $1", email
    )
    return count


async def test_unreachable_cognito_is_503_everywhere(unreachable, client, admin_db, capsys):
    email = new_email()
    answer = await unreachable.post(
        "/auth/register",
        json={"email": email, "password": "Correct-Horse-9"},
        headers={"X-Request-ID": "req-cognito-down"},
    )
    assert_unavailable(answer)
    assert answer.json()["request_id"] == "req-cognito-down"
    logged = [
        json.loads(line)
        for line in capsys.readouterr().out.splitlines()
        if line.startswith("{") and "micropay.auth.cognito" in line
    ]
    assert any(entry.get("request_id") == "req-cognito-down" for entry in logged)

    session = await signed_in(client)
    assert_unavailable(await login(unreachable, session["email"]))
    assert await failures_of(admin_db, session["email"]) == 0
    refreshed = await unreachable.post(
        "/auth/refresh", json={"refresh_token": session["refresh_token"]}
    )
    assert_unavailable(refreshed)
    token = bearer(session["access_token"])
    assert_unavailable(await unreachable.post("/auth/logout", headers=token))
    # The failed logout left nothing behind: the token still works.
    assert (await client.get("/auth/verify", headers=token)).status_code == 200
    assert_unavailable(await unreachable.post("/auth/resend-confirmation", json={"email": email}))


async def test_verify_needs_no_cognito(unreachable, make_user):
    user = make_user()
    answer = await unreachable.get("/auth/verify", headers=bearer(user.access_token))
    assert answer.status_code == 200
    assert answer.headers["x-user-id"] == user.sub


@pytest.mark.parametrize(
    "fault",
    [
        Fault(400, "TooManyRequestsException", "Rate exceeded"),
        Fault(400, "LimitExceededException", "Attempt limit exceeded"),
        Fault(500, "InternalErrorException", "Internal error"),
        Fault(503, "ServiceUnavailable", "Service unavailable"),
        Fault(200, delay_seconds=2.5, body={}),
    ],
    ids=["throttled", "limit", "internal", "unavailable", "stalled"],
)
async def test_cognito_trouble_on_login_is_503_and_not_a_failure(
    faulty, clear_faults, client, admin_db, fault
):
    email = new_email()
    assert (await register(client, email)).status_code == 201
    clear_faults.faults["AdminInitiateAuth"] = fault
    assert_unavailable(await login(faulty, email))
    assert await failures_of(admin_db, email) == 0


async def test_throttled_sign_up_creates_nothing(faulty, clear_faults, admin_db, cognito, aws):
    email = new_email()
    clear_faults.faults["SignUp"] = Fault(400, "TooManyRequestsException", "Rate exceeded")
    assert_unavailable(await register(faulty, email))
    assert await admin_db.fetchval("SELECT count(*) FROM auth.users WHERE email = $1", email) == 0
    with pytest.raises(cognito.exceptions.UserNotFoundException):
        cognito.admin_get_user(UserPoolId=aws.user_pool_id, Username=email)


async def test_a_failed_confirmation_step_undoes_the_sign_up(
    faulty, clear_faults, admin_db, cognito, aws
):
    email = new_email()
    clear_faults.faults["AdminConfirmSignUp"] = Fault(500, "InternalErrorException", "boom")
    assert_unavailable(await register(faulty, email))
    assert "AdminDeleteUser" in clear_faults.seen
    with pytest.raises(cognito.exceptions.UserNotFoundException):
        cognito.admin_get_user(UserPoolId=aws.user_pool_id, Username=email)
    assert await admin_db.fetchval("SELECT count(*) FROM auth.users WHERE email = $1", email) == 0


async def test_cognito_refusing_an_unconfirmed_user_is_403(faulty, clear_faults, client):
    email = new_email()
    await register(client, email)
    clear_faults.faults["AdminInitiateAuth"] = Fault(
        400, "UserNotConfirmedException", "User is not confirmed."
    )
    body = assert_problem(await login(faulty, email), 403, "email_not_confirmed")
    assert "/auth/confirm" in body["detail"]


@pytest.mark.parametrize(
    ("code", "problem"),
    [
        ("CodeMismatchException", "invalid_confirmation_code"),
        ("ExpiredCodeException", "expired_confirmation_code"),
        ("UserNotFoundException", "invalid_confirmation_code"),
    ],
)
async def test_bad_confirmation_codes_are_400(faulty, clear_faults, code, problem):
    clear_faults.faults["ConfirmSignUp"] = Fault(400, code, "no")
    answer = await faulty.post("/auth/confirm", json={"email": new_email(), "code": "000000"})
    assert_problem(answer, 400, problem)


async def test_a_retried_confirmation_cognito_already_took_completes_once(
    auth_client, cognito_faults, clear_faults, admin_db, cognito, aws
):
    """The first try reached Cognito but not the mirror; the retry finds the user confirmed."""
    email = new_email("retried")
    async with auth_client(
        aws_endpoint_url=cognito_faults.url, auth_auto_confirm=False, **FAST_FAILING
    ) as manual:
        user_id = (await register(manual, email)).json()["user_id"]
        cognito.admin_confirm_sign_up(UserPoolId=aws.user_pool_id, Username=email)
        clear_faults.faults["ConfirmSignUp"] = Fault(
            400, "NotAuthorizedException", "User cannot be confirmed. Current status is CONFIRMED"
        )
        retried = await manual.post("/auth/confirm", json={"email": email, "code": "123456"})
        assert retried.status_code == 200, retried.text
        # Recorded now: a further attempt is a wrong code, as for any confirmed account.
        again = await manual.post("/auth/confirm", json={"email": email, "code": "123456"})
        assert_problem(again, 400, "invalid_confirmation_code")

    events = await admin_db.fetch(
        "SELECT DISTINCT event_id, event_type FROM auth.outbox"
        " WHERE payload->'data'->>'user_id' = $1",
        user_id,
    )
    assert [row["event_type"] for row in events] == ["user.registered"]


async def test_a_wrong_code_for_an_unconfirmed_user_confirms_nothing(
    auth_client, cognito_faults, clear_faults, admin_db
):
    email = new_email("unproven")
    async with auth_client(
        aws_endpoint_url=cognito_faults.url, auth_auto_confirm=False, **FAST_FAILING
    ) as manual:
        user_id = (await register(manual, email)).json()["user_id"]
        clear_faults.faults["ConfirmSignUp"] = Fault(400, "NotAuthorizedException", "no")
        answer = await manual.post("/auth/confirm", json={"email": email, "code": "000000"})
        assert_problem(answer, 400, "invalid_confirmation_code")
    assert not await admin_db.fetchval(
        "SELECT count(*) FROM auth.outbox WHERE payload->'data'->>'user_id' = $1", user_id
    )
    assert (
        await admin_db.fetchval("SELECT confirmed_at FROM auth.users WHERE email = $1", email)
        is None
    )


@pytest.mark.parametrize(
    "fault",
    [
        Fault(200, body={"CodeDeliveryDetails": {"DeliveryMedium": "EMAIL"}}),
        Fault(400, "UserNotFoundException", "User does not exist."),
        Fault(400, "InvalidParameterException", "User is already confirmed."),
    ],
    ids=["sent", "unknown", "confirmed"],
)
async def test_resend_confirmation_answers_alike_whoever_asks(faulty, clear_faults, fault):
    clear_faults.faults["ResendConfirmationCode"] = fault
    answer = await faulty.post("/auth/resend-confirmation", json={"email": new_email()})
    assert answer.status_code == 202
    assert "ResendConfirmationCode" in clear_faults.seen


async def test_throttled_resend_is_503(faulty, clear_faults):
    clear_faults.faults["ResendConfirmationCode"] = Fault(
        400, "LimitExceededException", "Attempt limit exceeded"
    )
    answer = await faulty.post("/auth/resend-confirmation", json={"email": new_email()})
    assert_unavailable(answer)


async def test_a_stalled_cognito_call_does_not_block_the_event_loop(faulty, clear_faults, client):
    email = new_email()
    await register(client, email)
    clear_faults.faults["AdminInitiateAuth"] = Fault(200, delay_seconds=2.5, body={})
    stalled = asyncio.create_task(login(faulty, email))
    await asyncio.sleep(0.3)  # the login is now waiting on Cognito in a worker thread
    started = time.monotonic()
    live = await faulty.get("/health/live")
    assert live.status_code == 200
    assert time.monotonic() - started < 0.5
    assert not stalled.done()
    assert_unavailable(await stalled)
