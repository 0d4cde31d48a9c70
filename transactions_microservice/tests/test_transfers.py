"""Transfers: money moves once, both histories show it, refusals change nothing."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest

from transactions_microservice.tests.helpers import Member, all_entries, balance_of, ledger_check

PROBLEM_JSON = "application/problem+json"


def key() -> dict[str, str]:
    return {"Idempotency-Key": str(uuid.uuid4())}


async def transfer(client, sender, body: dict[str, Any], headers: dict[str, str] | None = None):
    return await client.post(
        "/transactions/transfers", json=body, headers={**sender.headers, **(headers or key())}
    )


@pytest.fixture
async def alice(register, top_up):
    member = await register()
    await top_up(member, 10_000)
    return member


@pytest.fixture
async def bob(register):
    return await register()


async def test_transfer_moves_money_and_shows_in_both_histories(
    client, admin, service_headers, alice, bob
):
    response = await transfer(
        client,
        alice,
        {"to_email": bob.email.upper(), "amount": 2_550, "currency": "usd", "description": "Rent"},
    )

    assert response.status_code == 201, response.text
    body = response.json()
    assert body["amount"] == 2_550
    assert body["currency"] == "USD"
    assert body["to_email"] == bob.email
    assert body["description"] == "Rent"
    # No id in the answer but the transfer's own: not the recipient's, not the sender's.
    assert set(body) == {"id", "amount", "currency", "to_email", "description", "created_at"}
    assert bob.id not in response.text
    assert alice.id not in response.text
    assert await balance_of(client, alice) == 7_450
    assert await balance_of(client, bob) == 2_550

    sent = (await all_entries(client, alice))[0]
    received = (await all_entries(client, bob))[0]
    assert sent["type"] == "transfer_out"
    assert sent["amount"] == -2_550
    assert sent["balance_after"] == 7_450
    assert sent["counterparty_email"] == bob.email
    assert received["type"] == "transfer_in"
    assert received["amount"] == 2_550
    assert received["balance_after"] == 2_550
    assert received["counterparty_email"] == alice.email
    for entry in (sent, received):
        assert entry["reference"] == body["id"]
        assert entry["transaction_id"] == body["id"]
        assert entry["description"] == "Rent"
    assert (await ledger_check(client, service_headers))["ok"] is True


async def test_transfer_completed_goes_out_with_the_transfer(client, admin, alice, bob):
    response = await transfer(
        client, alice, {"to_email": bob.email, "amount": 5, "currency": "USD"}
    )
    assert response.status_code == 201
    transfer_id = response.json()["id"]

    rows = await admin.fetch(
        "SELECT consumer, payload FROM transactions.outbox WHERE event_id = $1",
        uuid.UUID(transfer_id),
    )
    assert [row["consumer"] for row in rows] == ["notifications"]
    payload = json.loads(rows[0]["payload"])
    assert payload["type"] == "transfer.completed"
    assert payload["producer"] == "transactions"
    assert payload["data"] == {
        "transfer_id": transfer_id,
        "from_user_id": alice.id,
        "from_email": alice.email,
        "to_user_id": bob.id,
        "to_email": bob.email,
        "amount": 5,
        "currency": "USD",
        "description": None,
    }


async def test_overdraft_is_refused_and_changes_nothing(client, admin, alice, bob):
    outbox_before = await admin.fetchval("SELECT count(*) FROM transactions.outbox")

    response = await transfer(
        client, alice, {"to_email": bob.email, "amount": 10_001, "currency": "USD"}
    )

    assert response.status_code == 409
    assert response.headers["content-type"] == PROBLEM_JSON
    assert response.json()["type"] == "insufficient_funds"
    assert response.json()["available"] == 10_000
    assert await balance_of(client, alice) == 10_000
    assert await balance_of(client, bob) == 0
    assert len(await all_entries(client, alice)) == 1  # the top-up only
    assert await all_entries(client, bob) == []
    assert await admin.fetchval("SELECT count(*) FROM transactions.outbox") == outbox_before


async def test_spending_everything_leaves_zero(client, alice, bob):
    response = await transfer(
        client, alice, {"to_email": bob.email, "amount": 10_000, "currency": "USD"}
    )
    assert response.status_code == 201
    assert await balance_of(client, alice) == 0

    again = await transfer(client, alice, {"to_email": bob.email, "amount": 1, "currency": "USD"})
    assert again.status_code == 409
    assert again.json()["type"] == "insufficient_funds"


def without_request(problem: dict[str, Any]) -> dict[str, Any]:
    """A problem body without what differs per request."""
    return {
        name: value for name, value in problem.items() if name not in ("instance", "request_id")
    }


async def test_unknown_recipient_is_recipient_unavailable(client, alice):
    response = await transfer(
        client, alice, {"to_email": "nobody-here@example.com", "amount": 1, "currency": "USD"}
    )
    assert response.status_code == 422
    assert response.headers["content-type"] == PROBLEM_JSON
    assert response.json()["type"] == "recipient_unavailable"
    assert "nobody-here" not in response.text
    assert await balance_of(client, alice) == 10_000


async def test_an_empty_wallet_learns_nothing_about_the_recipient(client, register, bob):
    """The enumeration pair: without funds, a registered email and an unknown one answer alike."""
    carol = await register()
    for currency in ("USD", "EUR"):  # a wallet with nothing in it, and no wallet at all
        known = await transfer(
            client, carol, {"to_email": bob.email, "amount": 1, "currency": currency}
        )
        unknown = await transfer(
            client,
            carol,
            {
                "to_email": f"nobody-{uuid.uuid4().hex}@example.com",
                "amount": 1,
                "currency": currency,
            },
        )

        assert known.status_code == unknown.status_code == 409, (known.text, unknown.text)
        assert known.headers["content-type"] == unknown.headers["content-type"] == PROBLEM_JSON
        assert without_request(known.json()) == without_request(unknown.json())
        assert known.json()["type"] == "insufficient_funds"


async def test_with_funds_an_unknown_email_and_one_the_ledger_has_not_heard_of_answer_alike(
    client, make_user, alice
):
    """An email with a sign-in account but no `user.registered` (not confirmed, or not yet
    applied) is refused exactly as one nobody has."""
    unregistered = Member(make_user())
    answers = [
        await transfer(client, alice, {"to_email": email, "amount": 1, "currency": "USD"})
        for email in (unregistered.email, f"nobody-{uuid.uuid4().hex}@example.com")
    ]

    assert [answer.status_code for answer in answers] == [422, 422], [a.text for a in answers]
    assert without_request(answers[0].json()) == without_request(answers[1].json())
    assert set(answers[0].json()) <= {"type", "title", "status", "detail", "instance", "request_id"}
    assert answers[0].json()["type"] == "recipient_unavailable"
    assert unregistered.id not in answers[0].text
    assert await balance_of(client, alice) == 10_000


async def test_funds_are_weighed_before_the_recipient(client, alice):
    response = await transfer(
        client, alice, {"to_email": "nobody-here@example.com", "amount": 10_001, "currency": "USD"}
    )
    assert response.status_code == 409
    assert response.json()["type"] == "insufficient_funds"
    assert response.json()["available"] == 10_000


async def test_transfer_to_self_is_400(client, alice):
    response = await transfer(
        client, alice, {"to_email": f"  {alice.email.upper()} ", "amount": 1, "currency": "USD"}
    )
    assert response.status_code == 400
    assert response.json()["type"] == "transfer_to_self"
    assert await balance_of(client, alice) == 10_000


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("amount", 0),
        ("amount", -5),
        ("amount", 10.5),
        ("amount", 10.0),
        ("amount", "10"),
        ("amount", True),
        ("amount", None),
        ("amount", 10**13),
        ("currency", "XYZ"),
        ("currency", "US"),
        ("currency", None),
        ("to_email", ""),
    ],
)
async def test_invalid_bodies_are_422(client, alice, bob, field, value):
    body: dict[str, Any] = {"to_email": bob.email, "amount": 100, "currency": "USD"}
    body[field] = value

    response = await transfer(client, alice, body)

    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == PROBLEM_JSON
    assert response.json()["type"] == "validation_error"
    assert field in str(response.json()["errors"])
    assert await balance_of(client, alice) == 10_000


async def test_unknown_fields_are_422(client, alice, bob):
    response = await transfer(
        client, alice, {"to_email": bob.email, "amount": 1, "currency": "USD", "from": "x"}
    )
    assert response.status_code == 422


async def test_no_wallet_in_the_currency_is_insufficient_funds(client, alice, bob):
    response = await transfer(
        client, alice, {"to_email": bob.email, "amount": 1, "currency": "EUR"}
    )
    assert response.status_code == 409
    assert response.json()["type"] == "insufficient_funds"
    assert response.json()["available"] == 0


async def test_recipient_gets_a_wallet_in_a_new_currency(client, top_up, alice, bob):
    await top_up(alice, 500, "JPY")

    response = await transfer(
        client, alice, {"to_email": bob.email, "amount": 300, "currency": "JPY"}
    )

    assert response.status_code == 201
    assert await balance_of(client, bob, "JPY") == 300
    balances = (await client.get("/transactions/balance", headers=bob.headers)).json()
    assert {wallet["currency"] for wallet in balances["balances"]} == {"JPY", "USD"}


async def test_idempotency_key_is_required(client, alice, bob):
    response = await client.post(
        "/transactions/transfers",
        json={"to_email": bob.email, "amount": 1, "currency": "USD"},
        headers=alice.headers,
    )
    assert response.status_code == 400
    assert response.json()["type"] == "idempotency_key_required"
    assert await balance_of(client, alice) == 10_000


async def test_a_retry_with_the_same_key_replays_without_moving_money_again(client, alice, bob):
    headers = key()
    body = {"to_email": bob.email, "amount": 700, "currency": "USD"}

    first = await transfer(client, alice, body, headers)
    second = await transfer(client, alice, body, headers)

    assert first.status_code == second.status_code == 201
    assert second.json() == first.json()
    assert second.headers["Idempotent-Replayed"] == "true"
    assert await balance_of(client, alice) == 9_300
    assert len(await all_entries(client, bob)) == 1


async def test_a_refusal_is_replayed_too(client, top_up, alice, bob):
    headers = key()
    body = {"to_email": bob.email, "amount": 20_000, "currency": "USD"}
    first = await transfer(client, alice, body, headers)
    await top_up(alice, 20_000)

    second = await transfer(client, alice, body, headers)

    assert first.status_code == second.status_code == 409
    assert second.headers["Idempotent-Replayed"] == "true"
    assert await balance_of(client, alice) == 30_000


async def test_the_same_key_with_another_body_is_409(client, alice, bob):
    headers = key()
    await transfer(client, alice, {"to_email": bob.email, "amount": 1, "currency": "USD"}, headers)

    response = await transfer(
        client, alice, {"to_email": bob.email, "amount": 2, "currency": "USD"}, headers
    )

    assert response.status_code == 409
    assert response.json()["type"] == "idempotency_conflict"
    assert await balance_of(client, alice) == 9_999


async def test_a_token_is_required(client, bob):
    response = await client.post(
        "/transactions/transfers",
        json={"to_email": bob.email, "amount": 1, "currency": "USD"},
        headers=key(),
    )
    assert response.status_code == 401
    assert response.headers["content-type"] == PROBLEM_JSON
