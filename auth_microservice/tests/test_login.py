"""POST /auth/login: tokens, no user enumeration, throttling per email and per client address."""

from __future__ import annotations

import asyncio
import json
import uuid

import pytest

from auth_microservice.client_ip import ClientAddressResolver
from auth_microservice.tests.helpers import (
    PASSWORD,
    assert_problem,
    fresh_ip,
    from_ip,
    login,
    new_email,
    register,
)
from micropay_testing.http import bearer

WRONG = "Wrong-Password-1"


async def test_login_returns_bearer_tokens_and_records_the_sign_in(client, admin_db):
    email = new_email()
    user_id = (await register(client, email)).json()["user_id"]
    answer = await login(client, email)
    assert answer.status_code == 200, answer.text
    tokens = answer.json()
    assert tokens["token_type"] == "Bearer"
    assert tokens["expires_in"] > 0
    assert all(tokens[name] for name in ("access_token", "id_token", "refresh_token"))
    me = await client.get("/auth/me", headers=bearer(tokens["access_token"]))
    assert me.json() == {"user_id": user_id, "email": email, "groups": []}
    sessions = await admin_db.fetch(
        "SELECT refresh_token_hash FROM auth.sessions WHERE user_id = $1", uuid.UUID(user_id)
    )
    assert len(sessions) == 1
    assert tokens["refresh_token"] not in sessions[0]["refresh_token_hash"]


async def test_wrong_password_and_unknown_email_get_the_same_answer(client):
    email = new_email()
    await register(client, email)
    wrong = await login(client, email, WRONG, from_ip(fresh_ip()))
    unknown = await login(client, new_email("nobody"), WRONG, from_ip(fresh_ip()))
    bodies = []
    for answer in (wrong, unknown):
        body = assert_problem(answer, 401, "invalid_credentials")
        body.pop("request_id")
        bodies.append(body)
        assert answer.headers["www-authenticate"] == "Bearer"
    assert bodies[0] == bodies[1]


async def age_failures(admin_db, seconds: float, *, email: str) -> None:
    """Move an email's recorded failures `seconds` into the past: its current wait has passed."""
    await admin_db.execute(
        "UPDATE auth.login_failures SET failed_at = failed_at - make_interval(secs => $2)"
        " WHERE email = $1",
        email,
        seconds,
    )


async def failures_of(admin_db, email: str) -> int:
    count: int = await admin_db.fetchval(
        "SELECT count(*) FROM auth.login_failures WHERE email = $1", email
    )
    return count


async def test_failures_for_an_email_delay_its_next_sign_in(client, admin_db):
    email = new_email("victim")
    await register(client, email)
    for _ in range(3):
        # Each guess from another address: the per-email delay must hold regardless.
        assert_problem(
            await login(client, email, WRONG, from_ip(fresh_ip())), 401, "invalid_credentials"
        )
    delayed = await login(client, email, PASSWORD, from_ip(fresh_ip()))
    body = assert_problem(delayed, 429, "too_many_login_attempts")
    assert "account" in body["detail"]
    # The first wait is a second (LOGIN_DELAY_BASE_SECONDS), not the window's 15 minutes.
    assert int(delayed.headers["retry-after"]) == 1
    # The delayed attempt was not counted, and another account is not affected.
    assert await failures_of(admin_db, email) == 3
    other = new_email()
    await register(client, other)
    assert (await login(client, other)).status_code == 200


async def test_the_delays_grow_with_each_failure_up_to_the_cap(auth_client, admin_db):
    email = new_email("slowed")
    settings = {
        "login_delay_after_failures_per_email": 2,
        "login_delay_base_seconds": 1,
        "login_delay_max_seconds": 8,
    }
    async with auth_client(**settings) as slowed:
        await register(slowed, email)
        for _ in range(2):
            await login(slowed, email, WRONG, from_ip(fresh_ip()))
        waits = []
        for _ in range(5):
            delayed = await login(slowed, email, WRONG, from_ip(fresh_ip()))
            assert_problem(delayed, 429, "too_many_login_attempts")
            wait = int(delayed.headers["retry-after"])
            waits.append(wait)
            await age_failures(admin_db, wait, email=email)
            # Once the wait has passed the guess is answered (and counted) again.
            assert_problem(
                await login(slowed, email, WRONG, from_ip(fresh_ip())), 401, "invalid_credentials"
            )
    assert waits == [1, 2, 4, 8, 8]


async def test_the_owner_signs_in_after_an_attackers_many_guesses(auth_client, admin_db):
    email = new_email("owner")
    settings = {
        "login_delay_after_failures_per_email": 2,
        "login_delay_base_seconds": 0.25,
        "login_delay_max_seconds": 1,
    }
    async with auth_client(**settings) as service:
        await register(service, email)
        # A patient attacker: every guess waits out the current delay, so each one counts.
        for _ in range(12):
            guess = await login(service, email, WRONG, from_ip(fresh_ip()))
            assert_problem(guess, 401, "invalid_credentials")
            await age_failures(admin_db, 1, email=email)
        # Then an impatient one, hammering: refused while the wait runs, and not counted.
        attacker = fresh_ip()
        await login(service, email, WRONG, from_ip(attacker))
        burst = [await login(service, email, WRONG, from_ip(attacker)) for _ in range(5)]
        assert {answer.status_code for answer in burst} == {429}
        assert await failures_of(admin_db, email) == 13

        owner = fresh_ip()
        delayed = await login(service, email, PASSWORD, from_ip(owner))
        assert_problem(delayed, 429, "too_many_login_attempts")
        assert int(delayed.headers["retry-after"]) == 1
        await asyncio.sleep(1.05)  # the capped delay, a second, has passed
        signed_in = await login(service, email, PASSWORD, from_ip(owner))
        assert signed_in.status_code == 200, signed_in.text
    assert await failures_of(admin_db, email) == 0


async def test_a_burst_from_one_address_hits_its_hard_limit_while_the_email_is_only_delayed(
    auth_client, admin_db
):
    victim, attacker, owner = new_email("target"), fresh_ip(), fresh_ip()
    settings = {
        "login_max_failures_per_ip": 4,
        "login_delay_after_failures_per_ip": 10,
        "login_delay_after_failures_per_email": 2,
        "login_delay_base_seconds": 1,
        "login_delay_max_seconds": 1,
    }
    async with auth_client(**settings) as service:
        await register(service, victim)
        for email in (new_email("spray"), new_email("spray"), victim, victim):
            assert_problem(
                await login(service, email, WRONG, from_ip(attacker)), 401, "invalid_credentials"
            )
        # The attacker's address is refused for the rest of the window, even the right password.
        blocked = await login(service, victim, PASSWORD, from_ip(attacker))
        body = assert_problem(blocked, 429, "too_many_login_attempts")
        assert "address" in body["detail"]
        assert int(blocked.headers["retry-after"]) > 800
        # The owner, from elsewhere, only waits out the email's delay.
        delayed = await login(service, victim, PASSWORD, from_ip(owner))
        body = assert_problem(delayed, 429, "too_many_login_attempts")
        assert "account" in body["detail"]
        assert int(delayed.headers["retry-after"]) == 1
        await asyncio.sleep(1.1)
        assert_problem(
            await login(service, new_email("spray"), WRONG, from_ip(attacker)),
            429,
            "too_many_login_attempts",
        )
        signed_in = await login(service, victim, PASSWORD, from_ip(owner))
        assert signed_in.status_code == 200, signed_in.text


async def test_failures_from_an_address_delay_its_next_sign_in(auth_client):
    spraying, elsewhere = fresh_ip(), fresh_ip()
    settings = {
        "login_delay_after_failures_per_ip": 2,
        "login_delay_base_seconds": 1,
        "login_delay_max_seconds": 1,
    }
    async with auth_client(**settings) as service:
        email = new_email()
        await register(service, email)
        for _ in range(2):
            await login(service, new_email("spray"), WRONG, from_ip(spraying))
        delayed = await login(service, email, PASSWORD, from_ip(spraying))
        body = assert_problem(delayed, 429, "too_many_login_attempts")
        assert "address" in body["detail"]
        assert int(delayed.headers["retry-after"]) == 1
        assert (await login(service, email, PASSWORD, from_ip(elsewhere))).status_code == 200


async def test_failures_age_out_of_the_sliding_window(client, admin_db):
    email = new_email()
    await register(client, email)
    await admin_db.execute(
        "INSERT INTO auth.login_failures (email, client_ip, failed_at)"
        " SELECT $1, '203.0.113.1', now() - interval '16 minutes' FROM generate_series(1, 5)",
        email,
    )
    assert (await login(client, email)).status_code == 200


async def test_success_clears_the_email_failures(client, admin_db):
    email = new_email()
    await register(client, email)
    for _ in range(3):
        await login(client, email, WRONG, from_ip(fresh_ip()))
    await age_failures(admin_db, 2, email=email)
    assert (await login(client, email, PASSWORD, from_ip(fresh_ip()))).status_code == 200
    assert await failures_of(admin_db, email) == 0


async def test_concurrent_guesses_cannot_pass_the_delay(client, admin_db):
    email = new_email("burst")
    await register(client, email)
    answers = await asyncio.gather(
        *(login(client, email, WRONG, from_ip(fresh_ip())) for _ in range(8))
    )
    assert sorted(a.status_code for a in answers) == [401] * 3 + [429] * 5
    assert await failures_of(admin_db, email) == 3


async def test_one_client_address_is_throttled_across_emails(auth_client, admin_db):
    attacker, bystander = fresh_ip(), fresh_ip()
    async with auth_client(login_max_failures_per_ip=3) as limited:
        for _ in range(3):
            await login(limited, new_email("spray"), WRONG, from_ip(attacker))
        blocked = await login(limited, new_email("spray"), WRONG, from_ip(attacker))
        body = assert_problem(blocked, 429, "too_many_login_attempts")
        assert "address" in body["detail"]
        assert int(blocked.headers["retry-after"]) > 0
        other = await login(limited, new_email("spray"), WRONG, from_ip(bystander))
        assert_problem(other, 401, "invalid_credentials")
    recorded = await admin_db.fetchval(
        "SELECT count(*) FROM auth.login_failures WHERE client_ip = $1", attacker
    )
    assert recorded == 3


async def test_forwarded_addresses_count_only_from_a_trusted_peer(client, auth_client, admin_db):
    # The in-process client's peer is 127.0.0.1: trusted by default, not when only 10.9.9.9 is.
    forwarded, spoofed = fresh_ip(), fresh_ip()
    trusted_email, untrusted_email = new_email(), new_email()
    await login(client, trusted_email, WRONG, from_ip(forwarded))
    async with auth_client(trusted_proxies="10.9.9.9") as untrusting:
        await login(untrusting, untrusted_email, WRONG, from_ip(spoofed))
    recorded = {
        row["email"]: row["client_ip"]
        for row in await admin_db.fetch(
            "SELECT email, client_ip FROM auth.login_failures WHERE email = ANY($1)",
            [trusted_email, untrusted_email],
        )
    }
    assert recorded == {trusted_email: forwarded, untrusted_email: "127.0.0.1"}


@pytest.mark.parametrize(
    ("peer", "headers", "expected"),
    [
        ("203.0.113.5", {"x-real-ip": "1.2.3.4"}, "203.0.113.5"),
        ("127.0.0.1", {"x-real-ip": "1.2.3.4"}, "1.2.3.4"),
        ("127.0.0.1", {"x-forwarded-for": "6.6.6.6, 1.2.3.4"}, "1.2.3.4"),
        ("127.0.0.1", {"x-forwarded-for": "6.6.6.6, 1.2.3.4, 10.0.0.2"}, "1.2.3.4"),
        ("10.0.0.7", {"x-real-ip": "garbage", "x-forwarded-for": "2001:db8::1"}, "2001:db8::1"),
        ("127.0.0.1", {}, "127.0.0.1"),
        ("127.0.0.1", {"x-forwarded-for": "not-an-ip"}, "127.0.0.1"),
        # A second proxy that wrote its own peer into X-Real-IP: the chain names the client.
        ("127.0.0.1", {"x-real-ip": "10.0.0.9", "x-forwarded-for": "1.2.3.4, 10.0.0.9"}, "1.2.3.4"),
    ],
)
def test_client_address_resolution(peer, headers, expected):
    resolver = ClientAddressResolver("127.0.0.1, 10.0.0.0/8")
    assert resolver.resolve(peer, headers) == expected


@pytest.mark.parametrize(
    ("peer", "expected"),
    [("10.0.3.4", "198.51.100.7"), ("203.0.113.9", "203.0.113.9")],
)
def test_the_client_header_of_api_gateway_is_believed_only_from_the_load_balancer(peer, expected):
    # AWS: API Gateway overwrites X-Client-IP with the caller's address; the instance's nginx
    # sets X-Real-IP to the load balancer and a client may have written X-Forwarded-For.
    resolver = ClientAddressResolver("10.0.0.0/8, 172.16.0.0/12", "X-Client-IP")
    headers = {
        "x-client-ip": "198.51.100.7",
        "x-real-ip": "10.0.1.2",
        "x-forwarded-for": "6.6.6.6, 10.0.2.3, 10.0.1.2",
    }
    assert resolver.resolve(peer, headers) == expected


async def test_a_pool_user_without_a_row_gets_one_at_sign_in(client, admin_db, make_user):
    # A Cognito user whose registration lost its row: the first sign-in completes it.
    user = make_user()
    answer = await login(client, user.username, user.password)
    assert answer.status_code == 200, answer.text
    row = await admin_db.fetchrow("SELECT * FROM auth.users WHERE id = $1", uuid.UUID(user.sub))
    assert row["email"] == user.username
    assert row["confirmed_at"] is not None
    events = await admin_db.fetch(
        "SELECT payload FROM auth.outbox WHERE payload->'data'->>'user_id' = $1", user.sub
    )
    assert len(events) == 2
    assert json.loads(events[0]["payload"])["type"] == "user.registered"


async def test_login_validates_its_body(client):
    assert_problem(await client.post("/auth/login", json={"email": "x"}), 422, "validation_error")
