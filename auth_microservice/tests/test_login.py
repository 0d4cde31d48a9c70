"""POST /auth/login: tokens, no user enumeration, throttling per email and per client address."""

from __future__ import annotations

import asyncio
import itertools
import json
import uuid

import pytest

from auth_microservice.client_ip import ClientAddressResolver
from auth_microservice.tests.helpers import (
    PASSWORD,
    assert_problem,
    login,
    new_email,
    register,
)
from micropay_testing.http import bearer

WRONG = "Wrong-Password-1"


def from_ip(address: str) -> dict[str, str]:
    """What the gateway adds (the in-process client's peer, 127.0.0.1, is a trusted proxy)."""
    return {"X-Real-IP": address, "X-Forwarded-For": address}


# Addresses handed out in order: drawn at random, two tests (or one test's attacker and
# bystander) sometimes shared one, and its failures from another test throttled it.
_TEST_NET_2 = itertools.count(1)


def fresh_ip() -> str:
    """A documentation address (TEST-NET-2) that no other test of this run has used."""
    host = next(_TEST_NET_2)
    assert host < 255, "out of TEST-NET-2 addresses"
    return f"198.51.100.{host}"


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


async def test_five_failures_for_an_email_throttle_the_sixth_attempt(client, admin_db):
    email = new_email("victim")
    await register(client, email)
    for _ in range(5):
        # Each guess from another address: the per-email limit must hold regardless.
        assert_problem(
            await login(client, email, WRONG, from_ip(fresh_ip())), 401, "invalid_credentials"
        )
    throttled = await login(client, email, WRONG, from_ip(fresh_ip()))
    body = assert_problem(throttled, 429, "too_many_login_attempts")
    assert "account" in body["detail"]
    assert 890 <= int(throttled.headers["retry-after"]) <= 900
    # Even the right password waits now, and the blocked attempt was not counted.
    assert (await login(client, email, PASSWORD, from_ip(fresh_ip()))).status_code == 429
    count = await admin_db.fetchval(
        "SELECT count(*) FROM auth.login_failures WHERE email = $1", email
    )
    assert count == 5
    # Another account from the same addresses is not affected.
    other = new_email()
    await register(client, other)
    assert (await login(client, other)).status_code == 200


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
    for _ in range(4):
        await login(client, email, WRONG, from_ip(fresh_ip()))
    assert (await login(client, email, PASSWORD, from_ip(fresh_ip()))).status_code == 200
    count = await admin_db.fetchval(
        "SELECT count(*) FROM auth.login_failures WHERE email = $1", email
    )
    assert count == 0


async def test_concurrent_guesses_cannot_pass_the_limit(client, admin_db):
    email = new_email("burst")
    await register(client, email)
    answers = await asyncio.gather(
        *(login(client, email, WRONG, from_ip(fresh_ip())) for _ in range(8))
    )
    assert sorted(a.status_code for a in answers) == [401] * 5 + [429] * 3
    count = await admin_db.fetchval(
        "SELECT count(*) FROM auth.login_failures WHERE email = $1", email
    )
    assert count == 5


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


async def test_forwarded_addresses_from_an_untrusted_peer_are_ignored(auth_client, admin_db):
    spoofed = fresh_ip()
    email = new_email()
    async with auth_client(trusted_proxies="10.9.9.9") as untrusting:
        await login(untrusting, email, WRONG, from_ip(spoofed))
    row = await admin_db.fetchrow(
        "SELECT client_ip FROM auth.login_failures WHERE email = $1", email
    )
    assert row["client_ip"] == "127.0.0.1"


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
    ],
)
def test_client_address_resolution(peer, headers, expected):
    resolver = ClientAddressResolver("127.0.0.1, 10.0.0.0/8")
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
