"""Idempotency-Key handling against a real PostgreSQL: replays, conflicts, concurrency, expiry."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Annotated, Any, Literal

import asyncpg
import httpx
import pytest
from fastapi import APIRouter, Depends, FastAPI
from fastapi.responses import Response
from pydantic import BaseModel
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from micropay_common.db import SessionDep
from micropay_common.errors import ProblemError, ServiceUnavailable
from micropay_common.idempotency import (
    IdempotencyDep,
    IdempotentRequest,
    RequiredIdempotencyDep,
    canonical_body,
    idempotency,
    idempotency_purge_job,
    purge_expired_idempotency_keys,
    request_fingerprint,
)
from micropay_common.security import CurrentUser
from micropay_common.state import ServiceState
from micropay_testing.apps import app_with, serve
from micropay_testing.cognito import CognitoUser
from micropay_testing.database import TestDatabase
from micropay_testing.http import bearer
from stack.postgres import connect

EFFECTS = "transactions.idempotency_test_effects"
KEYS = "transactions.idempotency_keys"
PROBLEM_JSON = "application/problem+json"
# A held execution (`hold=True`) waits after writing its effect until the test opens the gate
# of its note, which it does once the database shows the state the test needs (duplicates
# queued on the key): concurrency tests synchronise on that state, never on how long work takes.
GATES: dict[str, asyncio.Event] = {}
# How long a test waits for the database to reach a state it must reach: only a broken claim
# takes that long, and the bound turns a hang into a failure.
SETTLE_SECONDS = 10.0


class EffectIn(BaseModel):
    note: str
    hold: bool = False
    fail: Literal["none", "domain", "server", "crash"] = "none"
    fail_once: bool = False


class Refused(ProblemError):
    status = 409
    type = "refused"
    title = "Refused"


ImpatientIdempotencyDep = Annotated[
    IdempotentRequest, Depends(idempotency(lock_timeout_seconds=0.2), scope="function")
]


def build_app(settings: Any) -> FastAPI:
    router = APIRouter()
    attempted: set[str] = set()

    async def record(session: AsyncSession, owner: str, body: EffectIn) -> dict[str, Any]:
        row = await session.execute(
            text(f"INSERT INTO {EFFECTS} (owner, note) VALUES (:owner, :note) RETURNING id"),
            {"owner": owner, "note": body.note},
        )
        if body.hold:
            await GATES[body.note].wait()
        first_attempt = body.note not in attempted
        attempted.add(body.note)
        if body.fail != "none" and (first_attempt or not body.fail_once):
            # The effect above is already written: failing now checks that it is undone.
            if body.fail == "domain":
                raise Refused("Not today.", reason="testing")
            if body.fail == "server":
                raise ServiceUnavailable("Try again.")
            raise RuntimeError("unexpected")
        return {"id": row.scalar_one(), "note": body.note, "owner": owner}

    @router.post("/effects", status_code=201)
    async def create_effect(
        body: EffectIn, session: SessionDep, user: CurrentUser, idem: IdempotencyDep
    ) -> Response:
        return await idem.run(lambda: record(session, user.id, body), status_code=201)

    @router.post("/required-effects", status_code=201)
    async def create_required_effect(
        body: EffectIn, session: SessionDep, user: CurrentUser, idem: RequiredIdempotencyDep
    ) -> Response:
        return await idem.run(lambda: record(session, user.id, body), status_code=201)

    @router.post("/impatient-effects", status_code=201)
    async def create_impatient_effect(
        body: EffectIn, session: SessionDep, user: CurrentUser, idem: ImpatientIdempotencyDep
    ) -> Response:
        return await idem.run(lambda: record(session, user.id, body), status_code=201)

    @router.post("/silent-effects", status_code=204)
    async def create_silent_effect(
        body: EffectIn, session: SessionDep, user: CurrentUser, idem: IdempotencyDep
    ) -> Response:
        async def work() -> None:
            await record(session, user.id, body)

        return await idem.run(work, status_code=204)

    @router.post("/lock-timeout", status_code=201)
    async def lock_timeout_seen_by_the_work(
        session: SessionDep, user: CurrentUser, idem: RequiredIdempotencyDep
    ) -> Response:
        async def work() -> dict[str, str]:
            setting = await session.execute(text("SELECT current_setting('lock_timeout')"))
            return {"lock_timeout": setting.scalar_one()}

        return await idem.run(work, status_code=201)

    @router.post("/forgetful")
    async def forgetful(idem: IdempotencyDep) -> dict[str, bool]:
        return {"ran": idem.replayed}

    return app_with(settings, "transactions", [router])


@pytest.fixture(scope="module")
async def admin(database: TestDatabase) -> AsyncIterator[asyncpg.Connection]:
    conn = await connect(database.admin_url)
    await conn.execute(
        f"CREATE TABLE {EFFECTS} (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,"
        " owner text NOT NULL, note text NOT NULL)"
    )
    await conn.execute(f"GRANT SELECT, INSERT ON {EFFECTS} TO transactions_service")
    yield conn
    await conn.execute(f"DROP TABLE {EFFECTS}")
    await conn.close()


@pytest.fixture(scope="module")
def app(service_settings, admin) -> FastAPI:
    return build_app(service_settings("transactions"))


@pytest.fixture(scope="module")
async def client(app) -> AsyncIterator[httpx.AsyncClient]:
    async with serve(app) as client:
        yield client


@pytest.fixture(scope="module")
def alice(make_user: Callable[[], CognitoUser]) -> CognitoUser:
    return make_user()


@pytest.fixture(scope="module")
def bob(make_user: Callable[[], CognitoUser]) -> CognitoUser:
    return make_user()


def new_key() -> str:
    return str(uuid.uuid4())


def note() -> str:
    return f"note-{uuid.uuid4().hex}"


async def post(
    client: httpx.AsyncClient,
    user: CognitoUser | None,
    key: str | None,
    path: str = "/effects",
    **body: Any,
) -> httpx.Response:
    headers = bearer(user.access_token) if user else {}
    if key is not None:
        headers["Idempotency-Key"] = key
    return await client.post(path, json=body, headers=headers)


async def effects(admin: asyncpg.Connection, note_: str) -> int:
    return int(await admin.fetchval(f"SELECT count(*) FROM {EFFECTS} WHERE note = $1", note_))


async def key_row(admin: asyncpg.Connection, owner: str, key: str) -> asyncpg.Record | None:
    return await admin.fetchrow(
        "SELECT * FROM transactions.idempotency_keys WHERE owner = $1 AND key = $2", owner, key
    )


def assert_problem(response: httpx.Response, status: int, type_: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM_JSON
    body: dict[str, Any] = response.json()
    assert body["type"] == type_
    assert body["status"] == status
    return body


# --- fingerprints --------------------------------------------------------------------------------


def test_canonical_body_ignores_key_order_and_whitespace():
    assert canonical_body(b'{ "b": 1, "a": [1, 2] }') == b'{"a":[1,2],"b":1}'
    assert canonical_body(b"not json {") == b"not json {"
    assert canonical_body(b"") == b""


def test_fingerprint_covers_method_path_query_and_body():
    base = request_fingerprint("POST", "/effects", "", b'{"a":1}')
    assert base == request_fingerprint("post", "/effects", "", b'{ "a" : 1 }')
    assert base != request_fingerprint("PUT", "/effects", "", b'{"a":1}')
    assert base != request_fingerprint("POST", "/other", "", b'{"a":1}')
    assert base != request_fingerprint("POST", "/effects", "x=1", b'{"a":1}')
    assert base != request_fingerprint("POST", "/effects", "", b'{"a":2}')
    # Parts are delimited, so moving characters between them changes the fingerprint.
    assert request_fingerprint("POST", "/a", "b", b"") != request_fingerprint(
        "POST", "/ab", "", b""
    )


def test_lock_timeout_must_be_positive():
    with pytest.raises(ValueError, match="positive"):
        idempotency(lock_timeout_seconds=0)


# --- one caller ----------------------------------------------------------------------------------


async def test_first_call_executes_once_and_echoes_the_key(client, admin, alice):
    key, text_ = new_key(), note()
    response = await post(client, alice, key, note=text_)
    assert response.status_code == 201
    assert response.json()["note"] == text_
    assert response.headers["Idempotency-Key"] == key
    assert "Idempotent-Replayed" not in response.headers
    assert await effects(admin, text_) == 1
    row = await key_row(admin, alice.sub, key)
    assert row is not None
    assert row["response_status"] == 201
    assert json.loads(row["response_body"]) == response.json()
    assert row["completed_at"] is not None
    ttl = (row["expires_at"] - row["created_at"]).total_seconds()
    assert abs(ttl - 24 * 3600) < 5


async def test_same_key_same_body_replays_the_stored_response(client, admin, alice):
    key, text_ = new_key(), note()
    first = await post(client, alice, key, note=text_, hold=False)
    again = await post(client, alice, key, note=text_, hold=False)
    assert again.status_code == first.status_code == 201
    assert again.json() == first.json()
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.headers["Idempotency-Key"] == key
    assert again.headers["content-type"] == "application/json"
    # Key order and whitespace are not part of the request's identity.
    reordered = await client.post(
        "/effects",
        content=b' {"hold" : false,\n  "note": "' + text_.encode() + b'"} ',
        headers={
            **bearer(alice.access_token),
            "Idempotency-Key": key,
            "Content-Type": "application/json",
        },
    )
    assert reordered.status_code == 201
    assert reordered.headers["Idempotent-Replayed"] == "true"
    assert reordered.json() == first.json()
    assert await effects(admin, text_) == 1


async def test_same_key_different_body_is_a_conflict(client, admin, alice):
    key, first_note, other_note = new_key(), note(), note()
    assert (await post(client, alice, key, note=first_note)).status_code == 201
    response = await post(client, alice, key, note=other_note)
    body = assert_problem(response, 409, "idempotency_conflict")
    assert body["title"] == "Keys are for retrying the same request"
    assert "different request body" in body["detail"]
    assert await effects(admin, other_note) == 0
    assert await effects(admin, first_note) == 1


async def test_same_key_on_another_endpoint_is_a_conflict(client, admin, alice):
    key, text_ = new_key(), note()
    assert (await post(client, alice, key, note=text_)).status_code == 201
    response = await post(client, alice, key, "/required-effects", note=text_)
    body = assert_problem(response, 409, "idempotency_conflict")
    assert "POST /effects" in body["detail"]
    assert await effects(admin, text_) == 1


async def test_keys_are_per_user(client, admin, alice, bob):
    key, text_ = new_key(), note()
    for_alice = await post(client, alice, key, note=text_)
    for_bob = await post(client, bob, key, note=text_)
    assert for_alice.status_code == for_bob.status_code == 201
    assert "Idempotent-Replayed" not in for_bob.headers
    assert for_alice.json()["owner"] == alice.sub
    assert for_bob.json()["owner"] == bob.sub
    assert await effects(admin, text_) == 2


async def test_a_domain_error_is_undone_stored_and_replayed(client, admin, alice):
    key, text_ = new_key(), note()
    first = await post(client, alice, key, note=text_, fail="domain")
    body = assert_problem(first, 409, "refused")
    assert body["reason"] == "testing"
    assert first.headers["Idempotency-Key"] == key
    assert await effects(admin, text_) == 0  # the insert before the error was rolled back
    row = await key_row(admin, alice.sub, key)
    assert row is not None
    assert row["response_status"] == 409
    assert row["response_media_type"] == PROBLEM_JSON

    again = await post(client, alice, key, note=text_, fail="domain")
    assert again.headers["Idempotent-Replayed"] == "true"
    assert assert_problem(again, 409, "refused") == body
    assert await effects(admin, text_) == 0


@pytest.mark.parametrize(
    ("fail", "status", "type_"),
    [
        ("server", 503, "service_unavailable"),
        ("crash", 500, "internal_error"),
    ],
)
async def test_a_server_error_stores_nothing_and_a_retry_executes(
    client, admin, alice, fail, status, type_
):
    key, text_ = new_key(), note()
    failed = await post(client, alice, key, note=text_, fail=fail, fail_once=True)
    assert_problem(failed, status, type_)
    assert await effects(admin, text_) == 0
    assert await key_row(admin, alice.sub, key) is None

    retried = await post(client, alice, key, note=text_, fail=fail, fail_once=True)
    assert retried.status_code == 201
    assert "Idempotent-Replayed" not in retried.headers
    assert await effects(admin, text_) == 1
    replayed = await post(client, alice, key, note=text_, fail=fail, fail_once=True)
    assert replayed.headers["Idempotent-Replayed"] == "true"
    assert replayed.json() == retried.json()


async def test_an_invalid_body_does_not_use_up_the_key(client, admin, alice):
    key, text_ = new_key(), note()
    invalid = await post(client, alice, key, note=text_, fail="sometimes")
    assert_problem(invalid, 422, "validation_error")
    assert await key_row(admin, alice.sub, key) is None
    valid = await post(client, alice, key, note=text_)
    assert valid.status_code == 201
    assert "Idempotent-Replayed" not in valid.headers
    assert await effects(admin, text_) == 1


async def test_an_unauthenticated_request_claims_no_key(client, admin, alice):
    key, text_ = new_key(), note()
    response = await post(client, None, key, note=text_)
    assert_problem(response, 401, "invalid_token")
    assert (
        await admin.fetchval(
            "SELECT count(*) FROM transactions.idempotency_keys WHERE key = $1", key
        )
        == 0
    )


async def test_no_content_responses_replay_too(client, admin, alice):
    key, text_ = new_key(), note()
    first = await post(client, alice, key, "/silent-effects", note=text_)
    again = await post(client, alice, key, "/silent-effects", note=text_)
    assert first.status_code == again.status_code == 204
    assert first.content == again.content == b""
    assert again.headers["Idempotent-Replayed"] == "true"
    assert await effects(admin, text_) == 1


async def test_the_header_is_documented(client):
    schema = (await client.get("/openapi.json")).json()
    parameters = schema["paths"]["/required-effects"]["post"]["parameters"]
    header = next(p for p in parameters if p["name"] == "Idempotency-Key")
    assert header["in"] == "header"
    assert "Required" in header["description"]


async def test_the_work_waits_on_locks_as_long_as_it_normally_would(client, alice):
    # The claim raises lock_timeout only for itself: the work sees the server's setting (0).
    response = await client.post(
        "/lock-timeout", headers={**bearer(alice.access_token), "Idempotency-Key": new_key()}
    )
    assert response.status_code == 201, response.text
    assert response.json() == {"lock_timeout": "0"}


async def test_an_endpoint_that_skips_run_leaves_no_key_behind(client, admin, alice):
    key = new_key()
    response = await post(client, alice, key, "/forgetful")
    assert response.status_code == 200
    assert await key_row(admin, alice.sub, key) is None


# --- the header ----------------------------------------------------------------------------------


async def test_without_a_key_the_optional_endpoint_executes_every_time(client, admin, alice):
    text_ = note()
    first = await post(client, alice, None, note=text_)
    second = await post(client, alice, None, note=text_)
    assert first.status_code == second.status_code == 201
    assert first.json()["id"] != second.json()["id"]
    assert "Idempotency-Key" not in second.headers
    assert "Idempotent-Replayed" not in second.headers
    assert await effects(admin, text_) == 2


async def test_a_required_key_that_is_missing_is_refused(client, admin, alice):
    text_ = note()
    response = await post(client, alice, None, "/required-effects", note=text_)
    assert_problem(response, 400, "idempotency_key_required")
    assert await effects(admin, text_) == 0


@pytest.mark.parametrize(
    "value",
    [b"", b"k" * 256, b"caf\xc3\xa9", b"tab\there", b"bell\x07"],
    ids=["empty", "too-long", "non-ascii", "tab", "control"],
)
async def test_a_malformed_key_is_refused(client, admin, alice, value):
    text_ = note()
    response = await client.post(
        "/required-effects",
        json={"note": text_},
        headers=[("Authorization", f"Bearer {alice.access_token}"), ("Idempotency-Key", value)],
    )
    assert_problem(response, 400, "invalid_idempotency_key")
    assert await effects(admin, text_) == 0


async def test_a_repeated_key_header_is_refused(client, admin, alice):
    text_ = note()
    response = await client.post(
        "/required-effects",
        json={"note": text_},
        headers=[
            ("Authorization", f"Bearer {alice.access_token}"),
            ("Idempotency-Key", "one"),
            ("Idempotency-Key", "two"),
        ],
    )
    assert_problem(response, 400, "invalid_idempotency_key")
    assert await effects(admin, text_) == 0


async def test_a_key_of_255_printable_characters_is_accepted(client, admin, alice):
    key, text_ = (("~ " + uuid.uuid4().hex) * 8)[:255], note()
    assert len(key) == 255
    first = await post(client, alice, key, "/required-effects", note=text_)
    again = await post(client, alice, key, "/required-effects", note=text_)
    assert first.status_code == 201
    assert again.headers["Idempotent-Replayed"] == "true"
    assert await effects(admin, text_) == 1


# --- concurrency ---------------------------------------------------------------------------------


async def wait_until(predicate: Callable[[], Awaitable[bool]], within: float) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if await predicate():
            return True
        await asyncio.sleep(0.02)
    return False


async def backends(admin: asyncpg.Connection, condition: str) -> int:
    """Sessions of the service role in this database that match `condition`."""
    return int(
        await admin.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
            f" AND usename = 'transactions_service' AND {condition}"
        )
    )


async def waiting_on_a_key(admin: asyncpg.Connection) -> int:
    """Requests whose claim waits for the transaction that holds their key row to end."""
    return await backends(admin, "wait_event_type = 'Lock' AND wait_event = 'transactionid'")


@asynccontextmanager
async def held_at_the_gate(
    text_: str, *requests: Awaitable[httpx.Response]
) -> AsyncIterator[tuple[asyncio.Event, asyncio.Future[list[httpx.Response]]]]:
    """Send `requests` at once, each execution held at the gate of `text_` until it is set.

    On leaving, the gate is open and every request has answered, whatever happened inside.
    """
    gate = GATES[text_] = asyncio.Event()
    responses = asyncio.gather(*requests)
    try:
        yield gate, responses
    finally:
        gate.set()
        await asyncio.gather(responses, return_exceptions=True)
        del GATES[text_]


@asynccontextmanager
async def new_claims_held(
    database: TestDatabase, admin: asyncpg.Connection
) -> AsyncIterator[asyncio.Task[str]]:
    """Hold back every new claim of a key until the transactions holding the key table now end.

    A claim's INSERT takes the table's ROW EXCLUSIVE lock, which conflicts with SHARE, and
    PostgreSQL queues a new lock request behind a waiting one it conflicts with; a claim already
    running has its lock and goes on. Yields the SHARE lock request, done when those transactions
    have ended; it is released on leaving.
    """
    conn = await connect(database.admin_url)
    try:
        await conn.execute("BEGIN")
        lock = asyncio.create_task(conn.execute(f"LOCK TABLE {KEYS} IN SHARE MODE"))
        try:

            async def queued() -> bool:
                return bool(
                    await admin.fetchval(
                        "SELECT wait_event_type = 'Lock' FROM pg_stat_activity WHERE pid = $1",
                        conn.get_server_pid(),
                    )
                )

            assert await wait_until(queued, within=SETTLE_SECONDS), "the lock was not queued"
            yield lock
            await lock
        finally:
            lock.cancel()
            await asyncio.gather(lock, return_exceptions=True)
    finally:
        await conn.close()  # ends the transaction, and the lock with it


@pytest.mark.parametrize("copies", [2, 10])
async def test_concurrent_requests_with_one_key_execute_once(client, admin, alice, copies):
    key, text_ = new_key(), note()
    posts = [post(client, alice, key, note=text_, hold=True) for _ in range(copies)]
    async with held_at_the_gate(text_, *posts) as (gate, requests):
        # Every duplicate must really be waiting on the first one's uncommitted key row.
        async def all_duplicates_wait() -> bool:
            return bool(await waiting_on_a_key(admin) == copies - 1)

        assert await wait_until(all_duplicates_wait, within=SETTLE_SECONDS), "no overlap"
        gate.set()
        responses = await requests
    assert [r.status_code for r in responses] == [201] * copies
    assert all(r.json() == responses[0].json() for r in responses)
    replayed = [r.headers.get("Idempotent-Replayed") for r in responses]
    assert replayed.count("true") == copies - 1
    assert replayed.count(None) == 1
    assert await effects(admin, text_) == 1


async def a_duplicate_waits(admin: asyncpg.Connection) -> bool:
    """Whether one request waits on the key row of another, uncommitted."""
    return await waiting_on_a_key(admin) == 1


async def test_a_waiting_duplicate_executes_when_the_first_one_fails(client, admin, alice):
    key, text_ = new_key(), note()
    posts = [
        post(client, alice, key, note=text_, hold=True, fail="server", fail_once=True)
        for _ in range(2)
    ]
    async with held_at_the_gate(text_, *posts) as (gate, requests):
        assert await wait_until(lambda: a_duplicate_waits(admin), within=SETTLE_SECONDS)
        gate.set()
        responses = await requests
    # The first one's rollback released the key, so the waiting one ran the work itself.
    assert sorted(r.status_code for r in responses) == [201, 503]
    assert all("Idempotent-Replayed" not in r.headers for r in responses)
    assert await effects(admin, text_) == 1


async def test_a_refused_request_answers_what_a_waiting_duplicate_then_stored(
    client, admin, database, alice
):
    # The first execution is refused (4xx), and its rollback hands the key to the duplicate
    # waiting on it, whose execution succeeds. The refused request claims the key again, waits
    # for that outcome and answers it: one key, one answer. Which of the two claims the key
    # first after the rollback is a race the waiting one usually wins; when the refused one's
    # new claim gets there first, both answer its stored refusal. New claims are held back here
    # until the duplicate has finished, so the duplicate wins every time.
    key, text_ = new_key(), note()
    posts = [
        post(client, alice, key, note=text_, hold=True, fail="domain", fail_once=True)
        for _ in range(2)
    ]
    async with held_at_the_gate(text_, *posts) as (gate, requests):
        assert await wait_until(lambda: a_duplicate_waits(admin), within=SETTLE_SECONDS)
        async with new_claims_held(database, admin) as duplicate_finished:
            gate.set()
            await duplicate_finished
        responses = await requests
    assert [r.status_code for r in responses] == [201, 201]
    assert responses[0].json() == responses[1].json()
    replayed = sorted(str(r.headers.get("Idempotent-Replayed")) for r in responses)
    assert replayed == ["None", "true"]
    assert await effects(admin, text_) == 1
    row = await key_row(admin, alice.sub, key)
    assert row is not None
    assert row["response_status"] == 201


async def test_a_duplicate_that_waits_too_long_gets_key_in_use(client, admin, alice):
    key, text_ = new_key(), note()
    first_post = post(client, alice, key, "/impatient-effects", note=text_, hold=True)
    async with held_at_the_gate(text_, first_post) as (gate, requests):

        async def first_holds_the_key() -> bool:
            # Its first write is the key row, so a transaction id means the key is claimed.
            return await backends(admin, "backend_xid IS NOT NULL") == 1

        assert await wait_until(first_holds_the_key, within=SETTLE_SECONDS)
        # Were it to execute, its work would wait at the closed gate: the bound fails it instead.
        busy = await asyncio.wait_for(
            post(client, alice, key, "/impatient-effects", note=text_, hold=True),
            timeout=SETTLE_SECONDS,
        )
        # The first is still held at the gate: the duplicate gave up after the lock timeout.
        assert not requests.done()
        body = assert_problem(busy, 409, "idempotency_key_in_use")
        assert busy.headers["Retry-After"] == "1"
        assert "still being processed" in body["detail"]
        gate.set()
        [first] = await requests

    assert first.status_code == 201
    later = await post(client, alice, key, "/impatient-effects", note=text_, hold=True)
    assert later.headers["Idempotent-Replayed"] == "true"
    assert later.json() == first.json()
    assert await effects(admin, text_) == 1


# --- expiry --------------------------------------------------------------------------------------


async def expire(admin: asyncpg.Connection, owner: str, key: str) -> None:
    await admin.execute(
        "UPDATE transactions.idempotency_keys SET expires_at = now() - interval '1 second'"
        " WHERE owner = $1 AND key = $2",
        owner,
        key,
    )


async def test_an_expired_key_counts_as_new(client, admin, alice):
    key, first_note, second_note = new_key(), note(), note()
    assert (await post(client, alice, key, note=first_note)).status_code == 201
    await expire(admin, alice.sub, key)
    # A different body would be a conflict if the old row still counted.
    response = await post(client, alice, key, note=second_note)
    assert response.status_code == 201
    assert "Idempotent-Replayed" not in response.headers
    assert await effects(admin, second_note) == 1
    row = await key_row(admin, alice.sub, key)
    assert row is not None
    assert json.loads(row["response_body"])["note"] == second_note
    assert row["expires_at"] > row["created_at"]


async def test_purge_deletes_expired_keys_only_and_they_can_be_used_again(
    app, client, admin, alice
):
    expired_key, live_key, text_ = new_key(), new_key(), note()
    assert (await post(client, alice, expired_key, note=text_)).status_code == 201
    assert (await post(client, alice, live_key, note=note())).status_code == 201
    await expire(admin, alice.sub, expired_key)

    async with ServiceState.of(app).sessionmaker() as session:
        removed = await purge_expired_idempotency_keys(session)
        await session.commit()
    assert removed >= 1
    assert await key_row(admin, alice.sub, expired_key) is None
    assert await key_row(admin, alice.sub, live_key) is not None

    again = await post(client, alice, expired_key, note=text_)
    assert again.status_code == 201
    assert "Idempotent-Replayed" not in again.headers
    assert await effects(admin, text_) == 2


async def test_the_purge_job_runs_in_the_background(app, client, admin, alice):
    key = new_key()
    assert (await post(client, alice, key, note=note())).status_code == 201
    await expire(admin, alice.sub, key)
    job = asyncio.create_task(idempotency_purge_job(app, interval_seconds=0.05))
    try:

        async def gone() -> bool:
            return await key_row(admin, alice.sub, key) is None

        assert await wait_until(gone, within=5)
        assert not job.done()  # it keeps looping
    finally:
        job.cancel()
        with pytest.raises(asyncio.CancelledError):
            await job
