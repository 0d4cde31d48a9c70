"""The auth service's own limits on sign-ups, confirmation attempts and code resends.

The rules: per client address, sign-ups, confirmation attempts (right or wrong) and resends are
counted over SIGNUP_WINDOW_SECONDS; per email, from any address, confirmation attempts and
resends are too. At a limit the answer is 429 `rate_limited` with Retry-After, Cognito is not
asked, and the refused request is not counted. A right code is refused from an address at its
limit but works from another address as long as the email is under its own limit.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from auth_microservice.main import build_app
from auth_microservice.tests.cognito_faults import CognitoFaults, Fault
from auth_microservice.tests.helpers import (
    AuthClient,
    assert_problem,
    fresh_ip,
    from_ip,
    new_email,
    register,
)
from micropay_testing.apps import serve

RIGHT = "123456"
WRONG = "000000"
WINDOW = 3600


@pytest.fixture
async def manual(
    auth_client: AuthClient, clear_faults: CognitoFaults
) -> AsyncIterator[httpx.AsyncClient]:
    """Codes confirm (as in AWS), checked by the proxy in front of moto; small limits."""
    clear_faults.confirmation_code = RIGHT
    async with auth_client(
        aws_endpoint_url=clear_faults.url,
        auth_auto_confirm=False,
        confirm_max_attempts_per_ip=3,
        confirm_max_attempts_per_email=4,
        resend_max_per_ip=3,
        resend_max_per_email=2,
        signup_window_seconds=WINDOW,
        cognito_max_attempts=1,
    ) as running:
        yield running


async def confirm(client: httpx.AsyncClient, email: str, code: str, address: str) -> httpx.Response:
    return await client.post(
        "/auth/confirm", json={"email": email, "code": code}, headers=from_ip(address)
    )


async def resend(client: httpx.AsyncClient, email: str, address: str) -> httpx.Response:
    return await client.post(
        "/auth/resend-confirmation", json={"email": email}, headers=from_ip(address)
    )


def assert_rate_limited(answer: httpx.Response, says: str) -> int:
    """A 429 `rate_limited` like the gateway's, naming what is limited; its Retry-After."""
    body = assert_problem(answer, 429, "rate_limited")
    assert body["title"] == "Too many requests"
    assert says in body["detail"], body["detail"]
    retry_after = int(answer.headers["retry-after"])
    # The oldest counted attempt was made moments ago, so it leaves the window in about WINDOW.
    assert WINDOW - 60 < retry_after <= WINDOW, retry_after
    return retry_after


async def attempts(admin_db: Any, action: str, *, client_ip: str = "", email: str = "") -> int:
    count: int = await admin_db.fetchval(
        "SELECT count(*) FROM auth.signup_attempts WHERE action = $1"
        " AND ($2 = '' OR client_ip = $2) AND ($3 = '' OR email = $3)",
        action,
        client_ip,
        email,
    )
    return count


async def age_attempts(admin_db: Any, *, client_ip: str = "", email: str = "") -> None:
    """Move an address's or an email's attempts out of the window, as if it had passed."""
    await admin_db.execute(
        "UPDATE auth.signup_attempts SET attempted_at = attempted_at - make_interval(secs => $3)"
        " WHERE ($1 = '' OR client_ip = $1) AND ($2 = '' OR email = $2)",
        client_ip,
        email,
        WINDOW,
    )


async def unconfirmed_user(client: httpx.AsyncClient) -> str:
    """A new account awaiting its code (signed up from an address of its own)."""
    email = new_email("pending")
    created = await register(client, email, headers=from_ip(fresh_ip()))
    assert created.status_code == 201, created.text
    assert created.json()["confirmed"] is False
    return email


async def test_sign_ups_over_the_limit_from_one_address_are_refused_while_another_signs_up(
    auth_client, admin_db, cognito, aws
):
    crowded, other = fresh_ip(), fresh_ip()
    async with auth_client(signup_max_per_ip=3, signup_window_seconds=WINDOW) as service:
        taken = new_email("taken")
        assert (await register(service, taken, headers=from_ip(crowded))).status_code == 201
        # A refused sign-up is a probe all the same: it counts.
        again = await register(service, taken, headers=from_ip(crowded))
        assert_problem(again, 409, "email_taken")
        assert (await register(service, new_email(), headers=from_ip(crowded))).status_code == 201

        refused_email = new_email("refused")
        refused = await register(service, refused_email, headers=from_ip(crowded))
        assert_rate_limited(refused, "sign-ups from this address")
        # Refused before Cognito: no user there, and the refusal itself was not counted.
        with pytest.raises(cognito.exceptions.UserNotFoundException):
            cognito.admin_get_user(UserPoolId=aws.user_pool_id, Username=refused_email)
        assert await attempts(admin_db, "register", client_ip=crowded) == 3

        assert (await register(service, new_email(), headers=from_ip(other))).status_code == 201

        # Once the window has passed the address signs up again.
        await age_attempts(admin_db, client_ip=crowded)
        assert (await register(service, refused_email, headers=from_ip(crowded))).status_code == 201


async def test_wrong_codes_count_and_then_even_the_right_code_is_refused_from_that_address(
    manual, clear_faults, admin_db
):
    email, bystander = await unconfirmed_user(manual), await unconfirmed_user(manual)
    guesser, owner = fresh_ip(), fresh_ip()
    for _ in range(3):
        assert_problem(
            await confirm(manual, email, WRONG, guesser), 400, "invalid_confirmation_code"
        )
    asked = clear_faults.seen.count("ConfirmSignUp")
    assert asked == 3

    # The address is at its limit: the right code is refused too, for any email, unasked.
    assert_rate_limited(await confirm(manual, email, RIGHT, guesser), "from this address")
    assert_rate_limited(await confirm(manual, bystander, RIGHT, guesser), "from this address")
    assert clear_faults.seen.count("ConfirmSignUp") == asked
    assert await attempts(admin_db, "confirm", client_ip=guesser) == 3
    assert await admin_db.fetchval(
        "SELECT confirmed_at IS NULL FROM auth.users WHERE email = $1", email
    )

    # From another address the right code works: the email has 3 of its 4 attempts used.
    confirmed = await confirm(manual, email, RIGHT, owner)
    assert confirmed.status_code == 200, confirmed.text

    # After the window the guessing address is heard again.
    await age_attempts(admin_db, client_ip=guesser)
    confirmed = await confirm(manual, bystander, RIGHT, guesser)
    assert confirmed.status_code == 200, confirmed.text


async def test_code_guesses_for_one_email_from_many_addresses_are_bounded(
    manual, clear_faults, admin_db
):
    email, other = await unconfirmed_user(manual), await unconfirmed_user(manual)
    for _ in range(4):
        assert_problem(
            await confirm(manual, email, WRONG, fresh_ip()), 400, "invalid_confirmation_code"
        )
    asked = clear_faults.seen.count("ConfirmSignUp")

    # The email is at its limit, whoever asks and whatever the code; the address is not.
    owner = fresh_ip()
    assert_rate_limited(await confirm(manual, email, RIGHT, owner), "for this email address")
    assert clear_faults.seen.count("ConfirmSignUp") == asked
    assert (await confirm(manual, other, RIGHT, owner)).status_code == 200
    assert await attempts(admin_db, "confirm", email=email) == 4

    await age_attempts(admin_db, email=email)
    confirmed = await confirm(manual, email, RIGHT, owner)
    assert confirmed.status_code == 200, confirmed.text


async def test_code_resends_are_limited_per_address_and_per_email(manual, clear_faults, admin_db):
    clear_faults.faults["ResendConfirmationCode"] = Fault(
        200, body={"CodeDeliveryDetails": {"DeliveryMedium": "EMAIL"}}
    )
    victim, asker = new_email("inbox"), fresh_ip()
    # One address asking for many emails.
    for _ in range(3):
        assert (await resend(manual, new_email(), asker)).status_code == 202
    assert_rate_limited(await resend(manual, new_email(), asker), "from this address")
    # Many addresses asking for one email (filling its inbox).
    for _ in range(2):
        assert (await resend(manual, victim, fresh_ip())).status_code == 202
    assert_rate_limited(await resend(manual, victim, fresh_ip()), "for this email address")
    assert clear_faults.seen.count("ResendConfirmationCode") == 5
    assert await attempts(admin_db, "resend", email=victim) == 2


async def test_concurrent_wrong_codes_from_one_address_cannot_pass_the_limit(
    manual, clear_faults, admin_db
):
    email, guesser = await unconfirmed_user(manual), fresh_ip()
    answers = await asyncio.gather(*(confirm(manual, email, WRONG, guesser) for _ in range(8)))
    statuses = sorted(answer.status_code for answer in answers)
    assert statuses == [400] * 3 + [429] * 5, statuses
    assert clear_faults.seen.count("ConfirmSignUp") == 3
    assert await attempts(admin_db, "confirm", client_ip=guesser) == 3


async def test_concurrent_sign_ups_from_one_address_cannot_pass_the_limit(auth_client, admin_db):
    crowded = fresh_ip()
    async with auth_client(signup_max_per_ip=3, db_pool_size=4) as service:
        answers = await asyncio.gather(
            *(register(service, new_email("burst"), headers=from_ip(crowded)) for _ in range(8))
        )
    statuses = sorted(answer.status_code for answer in answers)
    assert statuses == [201] * 3 + [429] * 5, statuses
    assert await attempts(admin_db, "register", client_ip=crowded) == 3


async def test_the_purge_drops_attempts_that_left_the_window(auth_settings, admin_db):
    address = fresh_ip()
    await admin_db.execute(
        "INSERT INTO auth.signup_attempts (action, client_ip, email, attempted_at) VALUES"
        " ('register', $1, 'old@example.com', now() - interval '2 hours'),"
        " ('confirm', $1, 'old@example.com', now() - interval '61 minutes'),"
        " ('resend', $1, 'live@example.com', now() - interval '59 minutes')",
        address,
    )
    # The purge job makes a pass as soon as the service starts.
    async with serve(build_app(auth_settings(signup_window_seconds=WINDOW))):
        for _ in range(100):
            if not await attempts(admin_db, "register", client_ip=address):
                break
            await asyncio.sleep(0.05)
    left = await admin_db.fetch(
        "SELECT action, email FROM auth.signup_attempts WHERE client_ip = $1", address
    )
    assert [(row["action"], row["email"]) for row in left] == [("resend", "live@example.com")]


async def test_openapi_documents_the_429_of_each_limited_route(client):
    paths = (await client.get("/openapi.json")).json()["paths"]
    for path in ("/auth/register", "/auth/confirm", "/auth/resend-confirmation"):
        assert "429" in paths[path]["post"]["responses"], path
