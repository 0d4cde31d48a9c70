"""GET /auth/verify and /auth/me, POST /auth/refresh and /auth/logout, GET /auth/users, purge."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from typing import Any

import jwt
import pytest

from auth_microservice.main import build_app
from auth_microservice.tests.helpers import assert_problem, new_email, register, signed_in
from micropay_common.cognito import secret_hash
from micropay_testing.apps import serve
from micropay_testing.http import bearer
from micropay_testing.processes import free_port


def claims(token: str) -> dict[str, Any]:
    return jwt.decode(token, options={"verify_signature": False})


async def test_verify_answers_the_caller_in_headers(client, make_user):
    user = make_user(groups=("services", "admins"))
    answer = await client.get("/auth/verify", headers=bearer(user.access_token))
    assert answer.status_code == 200
    assert answer.headers["x-user-id"] == user.sub
    assert answer.headers["x-user-email"] == user.username
    assert answer.headers["x-user-groups"] == "admins,services"
    assert answer.content == b""


@pytest.mark.parametrize("method", ["POST", "DELETE", "HEAD"])
async def test_verify_accepts_the_method_of_the_guarded_request(client, make_user, method):
    answer = await client.request(method, "/auth/verify", headers=bearer(make_user().access_token))
    assert answer.status_code == 200


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer not-a-jwt"}, {"Authorization": "Basic dXNlcjpwdw=="}],
)
async def test_verify_refuses_missing_or_bad_tokens(client, headers):
    answer = await client.get("/auth/verify", headers=headers)
    assert_problem(answer, 401, "invalid_token")
    assert answer.headers["www-authenticate"] == "Bearer"


async def test_verify_refuses_an_id_token(client, make_user):
    answer = await client.get("/auth/verify", headers=bearer(make_user().id_token))
    assert_problem(answer, 401, "invalid_token")


async def test_logout_revokes_at_once(client, admin_db, cognito, aws):
    session = await signed_in(client)
    access, refresh = session["access_token"], session["refresh_token"]
    refreshed = await client.post("/auth/refresh", json={"refresh_token": refresh})
    assert refreshed.status_code == 200

    answer = await client.post("/auth/logout", headers=bearer(access))
    assert answer.status_code == 204

    assert_problem(await client.get("/auth/verify", headers=bearer(access)), 401, "token_revoked")
    me = await client.get("/auth/me", headers=bearer(access))
    assert "revoked" in assert_problem(me, 401, "token_revoked")["detail"]
    assert_problem(
        await client.post("/auth/refresh", json={"refresh_token": refresh}),
        401,
        "invalid_refresh_token",
    )
    assert_problem(await client.post("/auth/logout", headers=bearer(access)), 401, "token_revoked")
    # Cognito itself refuses the refresh token after the global sign-out.
    with pytest.raises(cognito.exceptions.NotAuthorizedException):
        cognito.admin_initiate_auth(
            UserPoolId=aws.user_pool_id,
            ClientId=aws.client_id,
            AuthFlow="REFRESH_TOKEN_AUTH",
            AuthParameters={
                "REFRESH_TOKEN": refresh,
                "SECRET_HASH": secret_hash(session["email"], aws.client_id, aws.client_secret),
            },
        )
    token = claims(access)
    row = await admin_db.fetchrow(
        "SELECT * FROM auth.revoked_tokens WHERE origin_jti = $1", token["origin_jti"]
    )
    # Denied until the sign-in's newest access token expires (the refresh may be a second on).
    newest = max(token["exp"], claims(refreshed.json()["access_token"])["exp"])
    assert row["expires_at"] == datetime.fromtimestamp(newest, UTC)
    assert str(row["user_id"]) == token["sub"]


async def test_verify_refuses_a_logout_another_replica_recorded_within_a_second(client, admin_db):
    # The row only, as another auth replica's logout writes it, and no notification: the
    # replica's deny-set answers for the table, and a read within the staleness bound finds it.
    session = await signed_in(client)
    access = session["access_token"]
    assert (await client.get("/auth/verify", headers=bearer(access))).status_code == 200
    token = claims(access)
    await admin_db.execute(
        "INSERT INTO auth.revoked_tokens (origin_jti, user_id, expires_at) "
        "VALUES ($1, $2, to_timestamp($3))",
        token["origin_jti"],
        uuid.UUID(token["sub"]),
        token["exp"],
    )
    recorded_at = asyncio.get_running_loop().time()
    while True:
        answer = await client.get("/auth/verify", headers=bearer(access))
        if answer.status_code != 200 or asyncio.get_running_loop().time() - recorded_at > 3:
            break
        await asyncio.sleep(0.02)
    assert_problem(answer, 401, "token_revoked")
    # Every later check refuses it too, from the set as from the table.
    assert_problem(await client.get("/auth/verify", headers=bearer(access)), 401, "token_revoked")


async def test_logout_ends_every_sign_in_of_the_user(client):
    email = new_email()
    await register(client, email)
    first = (
        await client.post("/auth/login", json={"email": email, "password": "Correct-Horse-9"})
    ).json()
    second = (
        await client.post("/auth/login", json={"email": email, "password": "Correct-Horse-9"})
    ).json()
    assert (
        claims(first["access_token"])["origin_jti"] != claims(second["access_token"])["origin_jti"]
    )

    assert (
        await client.post("/auth/logout", headers=bearer(first["access_token"]))
    ).status_code == 204
    assert (
        await client.get("/auth/verify", headers=bearer(second["access_token"]))
    ).status_code == 401
    refreshed = await client.post("/auth/refresh", json={"refresh_token": second["refresh_token"]})
    assert_problem(refreshed, 401, "invalid_refresh_token")


async def test_refresh_gives_a_working_token_of_the_same_sign_in(client, admin_db):
    session = await signed_in(client)
    answer = await client.post("/auth/refresh", json={"refresh_token": session["refresh_token"]})
    assert answer.status_code == 200, answer.text
    fresh = answer.json()
    assert fresh["token_type"] == "Bearer"
    assert fresh["expires_in"] > 0
    assert fresh["access_token"] != session["access_token"]
    new, old = claims(fresh["access_token"]), claims(session["access_token"])
    assert new["origin_jti"] == old["origin_jti"]
    verified = await client.get("/auth/verify", headers=bearer(fresh["access_token"]))
    assert verified.headers["x-user-email"] == session["email"]
    expires = await admin_db.fetchval(
        "SELECT access_expires_at FROM auth.sessions WHERE origin_jti = $1", new["origin_jti"]
    )
    assert expires == datetime.fromtimestamp(new["exp"], UTC)


@pytest.mark.parametrize("token", ["bogus", str(uuid.uuid4())])
async def test_an_unknown_refresh_token_is_401(client, token):
    answer = await client.post("/auth/refresh", json={"refresh_token": token})
    assert_problem(answer, 401, "invalid_refresh_token")


async def test_an_expired_sign_in_cannot_refresh(client, admin_db):
    session = await signed_in(client)
    origin = claims(session["access_token"])["origin_jti"]
    await admin_db.execute(
        "UPDATE auth.sessions SET expires_at = now() - interval '1 second' WHERE origin_jti = $1",
        origin,
    )
    answer = await client.post("/auth/refresh", json={"refresh_token": session["refresh_token"]})
    assert_problem(answer, 401, "invalid_refresh_token")


async def test_me_needs_a_token(client):
    assert_problem(await client.get("/auth/me"), 401, "invalid_token")


async def test_purge_drops_only_what_expired(auth_settings, admin_db):
    user_id = uuid.uuid4()
    await admin_db.execute(
        "INSERT INTO auth.revoked_tokens (origin_jti, user_id, expires_at) VALUES"
        " ('purge-old', $1, now() - interval '1 minute'),"
        " ('purge-live', $1, now() + interval '1 hour')",
        user_id,
    )
    await admin_db.execute(
        "INSERT INTO auth.login_failures (email, client_ip, failed_at) VALUES"
        " ('purge@example.com', '192.0.2.1', now() - interval '1 day'),"
        " ('purge@example.com', '192.0.2.1', now())"
    )
    # The purge job makes a pass as soon as the service starts.
    async with serve(build_app(auth_settings())):
        for _ in range(100):
            if not await admin_db.fetchval(
                "SELECT count(*) FROM auth.revoked_tokens WHERE origin_jti = 'purge-old'"
            ):
                break
            await asyncio.sleep(0.05)
    left = await admin_db.fetch(
        "SELECT origin_jti FROM auth.revoked_tokens WHERE origin_jti LIKE 'purge-%'"
    )
    assert [r["origin_jti"] for r in left] == ["purge-live"]
    failures = await admin_db.fetchval(
        "SELECT count(*) FROM auth.login_failures WHERE email = 'purge@example.com'"
    )
    assert failures == 1


async def test_users_list_is_for_admins(client, make_user):
    answer = await client.get("/auth/users", headers=bearer(make_user().access_token))
    assert_problem(answer, 403, "forbidden")
    assert_problem(await client.get("/auth/users"), 401, "invalid_token")


async def test_users_list_pages_newest_first(client, make_user):
    admin = bearer(make_user(groups=("admins",)).access_token)
    created = [(await register(client, new_email("page"))).json()["user_id"] for _ in range(3)]
    first = await client.get("/auth/users", params={"limit": 2}, headers=admin)
    assert first.status_code == 200, first.text
    page = first.json()
    assert [u["user_id"] for u in page["data"]] == created[::-1][:2]
    assert page["has_more"] is True
    assert set(page["data"][0]) == {"user_id", "email", "confirmed", "created_at"}
    second = await client.get(
        "/auth/users", params={"limit": 1, "starting_after": created[1]}, headers=admin
    )
    assert [u["user_id"] for u in second.json()["data"]] == [created[0]]
    unknown = await client.get(
        "/auth/users", params={"starting_after": str(uuid.uuid4())}, headers=admin
    )
    assert_problem(unknown, 400, "invalid_cursor")
    for bad in ({"limit": 0}, {"limit": 101}, {"starting_after": "x"}):
        assert_problem(
            await client.get("/auth/users", params=bad, headers=admin), 422, "validation_error"
        )


async def test_verify_without_its_database_is_503_not_a_pass(auth_client, make_user):
    # The check fails closed: nginx answers 503 for anything but 2xx/401/403 from it.
    closed = f"postgresql://auth_service:x@127.0.0.1:{free_port()}/micropay"
    async with auth_client(database_url=closed) as no_database:
        answer = await no_database.get("/auth/verify", headers=bearer(make_user().access_token))
    assert_problem(answer, 503, "service_unavailable")
    assert answer.headers["retry-after"]
