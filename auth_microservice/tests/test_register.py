"""POST /auth/register and /auth/confirm against moto and PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import pytest

from auth_microservice.tests.helpers import (
    PASSWORD,
    assert_problem,
    login,
    new_email,
    register,
)


async def outbox_events(admin_db: Any, user_id: str) -> list[Any]:
    rows: list[Any] = await admin_db.fetch(
        "SELECT event_id, event_type, consumer, payload FROM auth.outbox"
        " WHERE payload->'data'->>'user_id' = $1 ORDER BY consumer",
        user_id,
    )
    return rows


async def test_register_creates_a_confirmed_user_its_row_and_its_event(
    client, admin_db, cognito, aws
):
    email = new_email("alice")
    answer = await register(client, f"  {email.upper()} ")
    assert answer.status_code == 201, answer.text
    body = answer.json()
    assert body["email"] == email
    assert body["confirmed"] is True
    user_id = body["user_id"]

    row = await admin_db.fetchrow("SELECT * FROM auth.users WHERE id = $1", uuid.UUID(user_id))
    assert row["email"] == email
    assert row["confirmed_at"] is not None

    events = await outbox_events(admin_db, user_id)
    assert [e["consumer"] for e in events] == ["notifications", "transactions"]
    assert len({e["event_id"] for e in events}) == 1
    assert {e["event_type"] for e in events} == {"user.registered"}
    assert all(
        json.loads(e["payload"])["data"] == {"user_id": user_id, "email": email} for e in events
    )

    cognito_user = cognito.admin_get_user(UserPoolId=aws.user_pool_id, Username=email)
    attributes = {a["Name"]: a["Value"] for a in cognito_user["UserAttributes"]}
    assert cognito_user["UserStatus"] == "CONFIRMED"
    assert attributes["email_verified"] == "true"
    assert attributes["sub"] == user_id


async def test_an_email_registers_once_whatever_its_case(client):
    email = new_email()
    assert (await register(client, email)).status_code == 201
    again = await register(client, email.upper())
    assert_problem(again, 409, "email_taken")


async def test_a_cognito_user_without_a_row_is_taken_too(client, cognito, aws):
    email = new_email("outside")
    cognito.admin_create_user(UserPoolId=aws.user_pool_id, Username=email, MessageAction="SUPPRESS")
    assert_problem(await register(client, email), 409, "email_taken")


@pytest.mark.parametrize(
    ("password", "rule", "words"),
    [
        ("Sh0rt-pw", "minimum_length", "at least 10 characters"),
        ("no-upper-case-1", "require_uppercase", "upper-case"),
        ("NO-LOWER-CASE-1", "require_lowercase", "lower-case"),
        ("No-Digits-At-All", "require_numbers", "digit"),
    ],
)
async def test_a_weak_password_is_400_naming_the_rule(client, cognito, aws, password, rule, words):
    email = new_email("weak")
    body = assert_problem(await register(client, email, password), 400, "weak_password")
    assert body["rule"] == rule
    assert words in body["detail"]
    with pytest.raises(cognito.exceptions.UserNotFoundException):
        cognito.admin_get_user(UserPoolId=aws.user_pool_id, Username=email)


async def test_cognito_stays_the_authority_on_passwords(client):
    # Fine by the rules read from the pool, but beyond moto's maximum length.
    body = assert_problem(
        await register(client, new_email(), "Aa1" + "x" * 120), 400, "weak_password"
    )
    assert body["rule"] == "policy"


@pytest.mark.parametrize("email", ["not-an-email", "a@b", "", "ünï@example.com"])
async def test_an_invalid_email_is_a_422_problem(client, email):
    assert_problem(await register(client, email), 422, "validation_error")


async def test_concurrent_registrations_of_one_email_create_one_user(client, admin_db):
    email = new_email("race")
    answers = await asyncio.gather(*(register(client, email) for _ in range(2)))
    assert sorted(a.status_code for a in answers) == [201, 409]
    rows = await admin_db.fetch("SELECT id FROM auth.users WHERE email = $1", email)
    assert len(rows) == 1
    events = await outbox_events(admin_db, str(rows[0]["id"]))
    assert len({e["event_id"] for e in events}) == 1


@pytest.fixture
async def failing_user_insert(admin_db):
    """A real database failure: inserting a user whose email starts with `undo-` raises."""
    await admin_db.execute(
        """
        CREATE FUNCTION auth.test_refuse_user() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN RAISE EXCEPTION 'refused by test trigger'; END $$;
        CREATE TRIGGER test_refuse_user BEFORE INSERT ON auth.users
            FOR EACH ROW WHEN (NEW.email LIKE 'undo-%') EXECUTE FUNCTION auth.test_refuse_user();
        """
    )
    yield
    await admin_db.execute(
        "DROP TRIGGER test_refuse_user ON auth.users; DROP FUNCTION auth.test_refuse_user()"
    )


async def test_a_failed_insert_deletes_the_cognito_user(
    client, admin_db, cognito, aws, failing_user_insert
):
    email = new_email("undo")
    answer = await register(client, email)
    assert_problem(answer, 503, "service_unavailable")
    assert answer.headers["retry-after"]
    with pytest.raises(cognito.exceptions.UserNotFoundException):
        cognito.admin_get_user(UserPoolId=aws.user_pool_id, Username=email)
    assert await admin_db.fetchval("SELECT count(*) FROM auth.users WHERE email = $1", email) == 0
    assert (
        await admin_db.fetchval(
            "SELECT count(*) FROM auth.outbox WHERE payload->'data'->>'email' = $1", email
        )
        == 0
    )


async def test_a_unique_violation_after_sign_up_is_409_and_undone(client, admin_db, cognito, aws):
    # Another writer takes the email between our check and our insert (inside sign-up).
    email = new_email("late")
    await admin_db.execute(
        """
        CREATE FUNCTION auth.test_steal_email() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF NEW.id <> '00000000-0000-0000-0000-000000000001' THEN
                INSERT INTO auth.users (id, email)
                VALUES ('00000000-0000-0000-0000-000000000001', NEW.email);
            END IF;
            RETURN NEW;
        END $$;
        """
    )
    await admin_db.execute(
        "CREATE TRIGGER test_steal_email BEFORE INSERT ON auth.users FOR EACH ROW"
        f" WHEN (NEW.email = '{email}') EXECUTE FUNCTION auth.test_steal_email()"
    )
    try:
        answer = await register(client, email)
    finally:
        await admin_db.execute(
            "DROP TRIGGER test_steal_email ON auth.users; DROP FUNCTION auth.test_steal_email();"
            "DELETE FROM auth.users WHERE id = '00000000-0000-0000-0000-000000000001'"
        )
    assert_problem(answer, 409, "email_taken")
    with pytest.raises(cognito.exceptions.UserNotFoundException):
        cognito.admin_get_user(UserPoolId=aws.user_pool_id, Username=email)


async def test_without_auto_confirm_the_code_confirms_the_account(auth_client, admin_db):
    email = new_email("manual")
    async with auth_client(auth_auto_confirm=False) as manual:
        created = await register(manual, email)
        assert created.status_code == 201
        assert created.json()["confirmed"] is False
        assert_problem(await login(manual, email), 403, "email_not_confirmed")

        confirmed = await manual.post("/auth/confirm", json={"email": email, "code": "123456"})
        assert confirmed.status_code == 200, confirmed.text
        assert confirmed.json() == {"email": email, "confirmed": True}
        assert (await login(manual, email, PASSWORD)).status_code == 200
    row = await admin_db.fetchrow("SELECT confirmed_at FROM auth.users WHERE email = $1", email)
    assert row["confirmed_at"] is not None


async def test_unconfirmed_login_with_a_wrong_password_is_still_401(auth_client):
    email = new_email("manual")
    async with auth_client(auth_auto_confirm=False) as manual:
        assert (await register(manual, email)).status_code == 201
        assert_problem(await login(manual, email, "Wrong-Password-1"), 401, "invalid_credentials")


async def test_an_unconfirmed_sign_up_publishes_nothing_until_confirmed_then_once(
    auth_client, admin_db
):
    """`user.registered` (the wallet, the transfer address) follows a proven email, once."""
    email = new_email("unproven")
    async with auth_client(auth_auto_confirm=False) as manual:
        created = await register(manual, email)
        assert created.status_code == 201, created.text
        user_id = created.json()["user_id"]
        assert await outbox_events(admin_db, user_id) == []

        confirmations = await asyncio.gather(
            *(
                manual.post("/auth/confirm", json={"email": email, "code": "123456"})
                for _ in range(2)
            )
        )
        again = await manual.post("/auth/confirm", json={"email": email, "code": "123456"})
        # A sign-in of the confirmed account finds its mirror confirmed: nothing more.
        assert (await login(manual, email, PASSWORD)).status_code == 200

    assert [answer.status_code for answer in [*confirmations, again]].count(200) >= 1
    events = await outbox_events(admin_db, user_id)
    assert {row["event_type"] for row in events} == {"user.registered"}
    assert len({row["event_id"] for row in events}) == 1
    assert sorted(row["consumer"] for row in events) == ["notifications", "transactions"]
    assert json.loads(events[0]["payload"])["data"] == {"user_id": user_id, "email": email}


async def test_a_sign_in_that_finds_cognito_confirmed_publishes_once(auth_client, admin_db):
    """Confirmed in Cognito but not yet in the mirror: the sign-in catches up and publishes."""
    email = new_email("lagging")
    async with auth_client(auth_auto_confirm=False) as manual:
        created = await register(manual, email)
        user_id = created.json()["user_id"]
        assert (
            await manual.post("/auth/confirm", json={"email": email, "code": "123456"})
        ).status_code == 200
        await admin_db.execute(
            "UPDATE auth.users SET confirmed_at = NULL WHERE id = $1", uuid.UUID(user_id)
        )
        await admin_db.execute(
            "DELETE FROM auth.outbox WHERE payload->'data'->>'user_id' = $1", user_id
        )
        for _ in range(2):
            assert (await login(manual, email, PASSWORD)).status_code == 200

    events = await outbox_events(admin_db, user_id)
    assert len({row["event_id"] for row in events}) == 1
    assert {row["event_type"] for row in events} == {"user.registered"}
