"""Money requests: asked by email, paid once as a transfer, closed once, revealing nothing."""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from typing import Any

import pytest

from micropay_testing.http import every_item
from transactions_microservice.requests.jobs import money_request_expiry_job
from transactions_microservice.tests.helpers import Member, all_entries, balance_of, ledger_check


def key() -> dict[str, str]:
    return {"Idempotency-Key": str(uuid.uuid4())}


async def ask(client, requester: Member, body: dict[str, Any], headers=None):
    return await client.post(
        "/transactions/requests", json=body, headers={**requester.headers, **(headers or key())}
    )


async def act(client, member: Member, request_id: str, action: str, headers=None):
    extra = (headers or key()) if action == "pay" else {}
    return await client.post(
        f"/transactions/requests/{request_id}/{action}", headers={**member.headers, **extra}
    )


async def requests_of(client, member: Member, **filters: Any) -> list[dict[str, Any]]:
    return await every_item(client, "/transactions/requests", member.headers, **filters)


async def events_of(admin, request_id: str) -> list[dict[str, Any]]:
    rows = await admin.fetch(
        "SELECT payload FROM transactions.outbox WHERE payload -> 'data' ->> 'request_id' = $1 "
        "ORDER BY id",
        request_id,
    )
    return [json.loads(row["payload"]) for row in rows]


@pytest.fixture
async def alice(register):
    return await register()


@pytest.fixture
async def bob(register, top_up):
    member = await register()
    await top_up(member, 10_000)
    return member


async def test_a_request_is_paid_once_as_a_transfer(client, admin, service_headers, alice, bob):
    asked = await ask(
        client,
        alice,
        {"from_email": bob.email.upper(), "amount": 1_250, "currency": "usd", "note": "Tickets"},
    )
    assert asked.status_code == 201, asked.text
    request = asked.json()
    assert request["status"] == "open"
    assert request["from_email"] == bob.email
    assert request["requester_email"] == alice.email
    assert request["transfer_id"] is None
    assert bob.id not in asked.text
    assert alice.id not in asked.text
    assert [r["id"] for r in await requests_of(client, bob, role="payer")] == [request["id"]]
    assert [r["id"] for r in await requests_of(client, alice)] == [request["id"]]

    paid = await act(client, bob, request["id"], "pay")

    assert paid.status_code == 201, paid.text
    assert paid.json()["status"] == "paid"
    transfer_id = paid.json()["transfer_id"]
    assert await balance_of(client, alice) == 1_250
    assert await balance_of(client, bob) == 8_750
    received = (await all_entries(client, alice))[0]
    assert (received["type"], received["reference"]) == ("transfer_in", transfer_id)
    types = [event["type"] for event in await events_of(admin, request["id"])]
    assert types == ["money_request.created", "money_request.received", "money_request.paid"]
    assert (await ledger_check(client, service_headers))["ok"] is True


async def test_a_request_paid_twice_at_once_moves_the_money_once(client, admin, alice, bob):
    request = (
        await ask(client, alice, {"from_email": bob.email, "amount": 700, "currency": "USD"})
    ).json()

    answers = await asyncio.gather(
        act(client, bob, request["id"], "pay"), act(client, bob, request["id"], "pay")
    )

    assert sorted(a.status_code for a in answers) == [201, 409]
    refused = next(a for a in answers if a.status_code == 409).json()
    assert (refused["type"], refused["request_status"]) == ("money_request_not_open", "paid")
    assert await balance_of(client, alice) == 700
    assert await balance_of(client, bob) == 9_300
    assert len([e for e in await all_entries(client, bob) if e["type"] == "transfer_out"]) == 1


async def test_a_pay_retried_with_its_key_replays_the_payment(client, alice, bob):
    request = (
        await ask(client, alice, {"from_email": bob.email, "amount": 300, "currency": "USD"})
    ).json()
    same = key()
    first = await act(client, bob, request["id"], "pay", same)
    again = await act(client, bob, request["id"], "pay", same)
    assert (first.status_code, again.status_code) == (201, 201)
    assert again.json() == first.json()
    assert again.headers["Idempotent-Replayed"] == "true"
    assert await balance_of(client, bob) == 9_700


async def test_a_request_the_payer_cannot_cover_stays_open(client, admin, alice, bob):
    request = (
        await ask(client, alice, {"from_email": bob.email, "amount": 10_001, "currency": "USD"})
    ).json()
    refused = await act(client, bob, request["id"], "pay")
    assert refused.status_code == 409
    assert refused.json()["type"] == "insufficient_funds"
    assert (await requests_of(client, alice))[0]["status"] == "open"
    assert await balance_of(client, bob) == 10_000


async def test_decline_and_cancel_close_once_and_only_for_their_side(client, admin, alice, bob):
    declined = (
        await ask(client, alice, {"from_email": bob.email, "amount": 100, "currency": "USD"})
    ).json()
    canceled = (
        await ask(client, alice, {"from_email": bob.email, "amount": 200, "currency": "USD"})
    ).json()

    # The requester cannot decline, the payer cannot cancel: neither sees it on that side.
    assert (await act(client, alice, declined["id"], "decline")).status_code == 404
    assert (await act(client, bob, canceled["id"], "cancel")).status_code == 404

    answer = await act(client, bob, declined["id"], "decline")
    assert answer.status_code == 200, answer.text
    assert answer.json()["status"] == "declined"
    assert answer.json()["resolved_at"] is not None
    answer = await act(client, alice, canceled["id"], "cancel")
    assert answer.status_code == 200, answer.text
    assert answer.json()["status"] == "canceled"

    for member, request_id, action in (
        (bob, declined["id"], "pay"),
        (bob, declined["id"], "decline"),
        (alice, canceled["id"], "cancel"),
        (bob, canceled["id"], "pay"),
    ):
        again = await act(client, member, request_id, action)
        assert again.status_code == 409, again.text
        assert again.json()["type"] == "money_request_not_open"
    assert await balance_of(client, bob) == 10_000
    assert [e["type"] for e in await events_of(admin, declined["id"])][-1] == (
        "money_request.declined"
    )
    assert [e["type"] for e in await events_of(admin, canceled["id"])][-1] == (
        "money_request.canceled"
    )
    listed = await requests_of(client, bob, role="payer", status="declined")
    assert [r["id"] for r in listed] == [declined["id"]]


async def test_an_expired_request_cannot_be_paid_and_the_sweep_closes_it(
    client, tx_app, admin, alice, bob
):
    request = (
        await ask(client, alice, {"from_email": bob.email, "amount": 100, "currency": "USD"})
    ).json()
    await admin.execute(
        "UPDATE transactions.money_requests SET expires_at = now() - interval '1 second' "
        "WHERE id = $1",
        uuid.UUID(request["id"]),
    )

    refused = await act(client, bob, request["id"], "pay")
    assert refused.status_code == 409
    assert refused.json()["request_status"] == "expired"

    job = asyncio.create_task(money_request_expiry_job(tx_app))
    try:
        for _ in range(100):
            if (await requests_of(client, alice))[0]["status"] == "open":
                await asyncio.sleep(0.05)
    finally:
        job.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await job
    assert (await requests_of(client, alice))[0]["status"] == "expired"
    assert [e["type"] for e in await events_of(admin, request["id"])][-1] == (
        "money_request.expired"
    )
    assert await balance_of(client, bob) == 10_000


async def test_the_answer_is_the_same_whether_or_not_the_email_has_an_account(
    client, admin, make_user, alice, bob
):
    stranger = Member(make_user())  # signed up with Cognito; the ledger has not heard of them
    known = await ask(client, alice, {"from_email": bob.email, "amount": 100, "currency": "USD"})
    unknown = await ask(
        client, alice, {"from_email": stranger.email, "amount": 100, "currency": "USD"}
    )
    assert (known.status_code, unknown.status_code) == (201, 201)

    def shape(body: dict[str, Any]) -> dict[str, Any]:
        varying = {"id", "from_email", "created_at", "expires_at"}
        return {k: v for k, v in body.items() if k not in varying}

    assert shape(known.json()) == shape(unknown.json())
    assert set(known.json()) == set(unknown.json())
    listed = {r["id"]: shape(r) for r in await requests_of(client, alice)}
    assert listed[known.json()["id"]] == listed[unknown.json()["id"]]


async def test_a_request_to_an_unregistered_email_is_paid_after_sign_up(
    client, admin, make_user, deliver, top_up, alice
):
    later = Member(make_user())
    request = (
        await ask(client, alice, {"from_email": later.email, "amount": 400, "currency": "USD"})
    ).json()
    assert request["status"] == "open"
    assert [e["type"] for e in await events_of(admin, request["id"])] == ["money_request.created"]
    assert (await act(client, later, request["id"], "pay")).status_code == 404

    registered = await deliver("user.registered", {"user_id": later.id, "email": later.email})
    assert registered.status_code == 200, registered.text
    await top_up(later, 1_000)

    events = await events_of(admin, request["id"])
    assert [e["type"] for e in events] == ["money_request.created", "money_request.received"]
    assert events[1]["data"]["payer_id"] == later.id
    assert [r["id"] for r in await requests_of(client, later, role="payer")] == [request["id"]]
    paid = await act(client, later, request["id"], "pay")
    assert paid.status_code == 201, paid.text
    assert await balance_of(client, alice) == 400
    assert await balance_of(client, later) == 600


async def test_bad_requests_are_refused_clearly(client, alice, bob):
    to_self = await ask(client, alice, {"from_email": alice.email, "amount": 1, "currency": "USD"})
    assert to_self.status_code == 400
    assert to_self.json()["type"] == "money_request_to_self"
    for body in (
        {"from_email": bob.email, "amount": 0, "currency": "USD"},
        {"from_email": bob.email, "amount": 1.5, "currency": "USD"},
        {"from_email": bob.email, "amount": 1, "currency": "XXX"},
    ):
        assert (await ask(client, alice, body)).status_code == 422
    no_key = await client.post(
        "/transactions/requests",
        json={"from_email": bob.email, "amount": 1, "currency": "USD"},
        headers=alice.headers,
    )
    assert no_key.status_code == 400
    missing = await act(client, bob, str(uuid.uuid4()), "pay")
    assert missing.status_code == 404
    bad_cursor = await client.get(
        "/transactions/requests",
        params={"starting_after": str(uuid.uuid4())},
        headers=alice.headers,
    )
    assert bad_cursor.status_code == 400
    assert bad_cursor.json()["type"] == "invalid_cursor"
