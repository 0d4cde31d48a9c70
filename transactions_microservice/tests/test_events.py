"""Events in: registrations open wallets, payments credit once, refunds debit once and safely."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from micropay_testing.events import event_envelope
from transactions_microservice.tests.helpers import (
    Member,
    all_entries,
    balance_of,
    ledger_check,
)


def payment(member: Member, amount: int, currency: str = "USD", payment_id: str | None = None):
    return {
        "payment_id": payment_id or f"pay_{uuid.uuid4().hex[:12]}",
        "user_id": member.id,
        "amount": amount,
        "currency": currency,
    }


def refund(
    member: Member, amount: int, *, hold_id: str | None = None, refund_id: str | None = None
):
    return {
        "payment_id": "pay_refunded",
        "refund_id": refund_id or f"re_{uuid.uuid4().hex[:12]}",
        "user_id": member.id,
        "amount": amount,
        "currency": "USD",
        "hold_id": hold_id,
    }


async def system_balance(admin, code: str, currency: str = "USD") -> int:
    value = await admin.fetchval(
        "SELECT balance FROM transactions.accounts WHERE system_code = $1 AND currency = $2",
        code,
        currency,
    )
    return int(value or 0)


async def test_registration_opens_a_wallet_and_records_the_email(client, admin, register):
    member = await register()

    balances = (await client.get("/transactions/balance", headers=member.headers)).json()
    assert balances == {
        "balances": [
            {"currency": "USD", "available": 0, "balance": 0, "held": 0, "pending": 0, "owed": 0}
        ]
    }
    email = await admin.fetchval(
        "SELECT email FROM transactions.users WHERE user_id = $1", member.id
    )
    assert email == member.email.lower()


async def test_registration_emails_are_stored_in_lower_case(client, admin, make_user, deliver):
    member = Member(make_user())
    response = await deliver(
        "user.registered",
        {"user_id": member.id, "email": "  Mixed.Case@Example.COM "},
    )
    assert response.status_code == 200
    email = await admin.fetchval(
        "SELECT email FROM transactions.users WHERE user_id = $1", member.id
    )
    assert email == "mixed.case@example.com"


async def test_an_email_moves_to_a_newer_registration(admin, make_user, deliver):
    email = f"reused-{uuid.uuid4().hex[:8]}@example.com"
    first, second = Member(make_user()), Member(make_user())
    for member in (first, second):
        response = await deliver("user.registered", {"user_id": member.id, "email": email})
        assert response.status_code == 200

    owner = await admin.fetchval("SELECT user_id FROM transactions.users WHERE email = $1", email)
    assert owner == second.id


async def test_a_repeated_registration_event_is_a_no_op(client, admin, make_user, deliver):
    member = Member(make_user())
    event = event_envelope("user.registered", {"user_id": member.id, "email": member.email})

    first = await deliver(event=event)
    second = await deliver(event=event)

    assert first.json() == {"status": "applied"}
    assert second.json() == {"status": "duplicate"}
    wallets = await admin.fetchval(
        "SELECT count(*) FROM transactions.accounts WHERE user_id = $1", member.id
    )
    assert wallets == 1


async def test_a_payment_credits_the_wallet_with_a_top_up_entry(client, admin, register, deliver):
    member = await register()
    funding_before = await system_balance(admin, "card_funding")
    data = payment(member, 4_200)

    response = await deliver("payment.succeeded", data)

    assert response.json() == {"status": "applied"}
    assert await balance_of(client, member) == 4_200
    [entry] = await all_entries(client, member)
    assert entry["type"] == "top_up"
    assert entry["amount"] == 4_200
    assert entry["balance_after"] == 4_200
    assert entry["reference"] == data["payment_id"]
    assert entry["counterparty_email"] is None
    assert await system_balance(admin, "card_funding") == funding_before - 4_200


async def test_a_payment_is_credited_once_whatever_carries_it(client, register, deliver):
    member = await register()
    data = payment(member, 1_000)
    event = event_envelope("payment.succeeded", data)

    await deliver(event=event)
    repeat = await deliver(event=event)
    # Another event for the same payment (say, webhook and confirmation both reported it).
    another = await deliver("payment.succeeded", data)

    assert repeat.json() == {"status": "duplicate"}
    assert another.json() == {"status": "applied"}
    assert await balance_of(client, member) == 1_000
    assert len(await all_entries(client, member)) == 1


async def test_a_payment_before_the_registration_opens_the_wallet(
    client, admin, make_user, deliver
):
    member = Member(make_user())

    credited = await deliver("payment.succeeded", payment(member, 750))
    registered = await deliver("user.registered", {"user_id": member.id, "email": member.email})

    assert credited.json() == {"status": "applied"}
    assert registered.json() == {"status": "applied"}
    assert await balance_of(client, member) == 750
    wallets = await admin.fetchval(
        "SELECT count(*) FROM transactions.accounts WHERE user_id = $1", member.id
    )
    assert wallets == 1


async def test_a_payment_in_another_currency_opens_that_wallet(client, register, deliver):
    member = await register()
    await deliver("payment.succeeded", payment(member, 300, "EUR"))
    assert await balance_of(client, member, "EUR") == 300
    assert await balance_of(client, member, "USD") == 0


async def test_a_payment_in_a_currency_wallets_do_not_list_is_credited_all_the_same(
    client, register, deliver
):
    # The card was charged; refusing the event would leave the money off the ledger.
    member = await register()
    response = await deliver("payment.succeeded", payment(member, 500, "CHF"))
    assert response.json() == {"status": "applied"}
    assert await balance_of(client, member, "CHF") == 500


@pytest.mark.parametrize(
    "data",
    [
        {"payment_id": "pay_x", "user_id": "u", "amount": -5, "currency": "USD"},
        {"payment_id": "pay_x", "user_id": "u", "amount": 5},
        {"payment_id": "pay_x", "user_id": "u", "amount": 5, "currency": "usd"},
        {"payment_id": "pay_x", "user_id": "u", "amount": 10**19, "currency": "USD"},
    ],
)
async def test_a_malformed_payload_is_422_and_not_recorded(client, admin, deliver, data):
    event = event_envelope("payment.succeeded", data)

    response = await deliver(event=event)

    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    recorded = await admin.fetchval(
        "SELECT count(*) FROM transactions.inbox WHERE event_id = $1", uuid.UUID(event["id"])
    )
    assert recorded == 0  # so the producer's retry, once fixed, is applied


async def test_events_need_a_service_token(client, register):
    member = await register()
    response = await client.post(
        "/internal/events",
        json=event_envelope("payment.succeeded", payment(member, 10**6)),
        headers=member.headers,
    )
    assert response.status_code == 403
    assert await balance_of(client, member) == 0


async def test_a_refund_without_a_hold_debits_the_wallet(
    client, admin, service_headers, register, top_up, deliver
):
    member = await register()
    await top_up(member, 1_000)
    refunds_before = await system_balance(admin, "refunds")
    data = refund(member, 400)

    response = await deliver("payment.refunded", data)
    repeat = await deliver("payment.refunded", data)

    assert response.json() == {"status": "applied"}
    assert repeat.json() == {"status": "applied"}  # a new event id, the same refund
    assert await balance_of(client, member) == 600
    entry = (await all_entries(client, member))[0]
    assert entry["type"] == "refund"
    assert entry["amount"] == -400
    assert entry["reference"] == data["refund_id"]
    assert await system_balance(admin, "refunds") == refunds_before + 400
    assert (await ledger_check(client, service_headers))["ok"] is True


async def test_a_refund_the_wallet_cannot_cover_takes_what_is_available(
    client, admin, service_headers, register, top_up, deliver
):
    member = await register()
    await top_up(member, 1_000)
    hold = await client.post(
        "/internal/holds",
        json={
            "user_id": member.id,
            "amount": 300,
            "currency": "USD",
            "reference": uuid.uuid4().hex,
        },
        headers=service_headers,
    )
    assert hold.status_code == 201
    shortfall_before = await system_balance(admin, "refund_shortfall")

    response = await deliver("payment.refunded", refund(member, 2_500))

    assert response.json() == {"status": "applied"}
    balances = (await client.get("/transactions/balance", headers=member.headers)).json()
    # The 300 held for something else stays held; the 700 available goes to the refund.
    assert balances["balances"] == [
        {"currency": "USD", "available": 0, "balance": 300, "held": 300, "pending": 0, "owed": 0}
    ]
    entry = (await all_entries(client, member))[0]
    assert entry["type"] == "refund"
    assert entry["amount"] == -700
    assert await system_balance(admin, "refund_shortfall") == shortfall_before - 1_800
    assert (await ledger_check(client, service_headers))["ok"] is True


async def test_a_refund_for_a_user_without_a_wallet_is_all_shortfall(
    client, admin, service_headers, make_user, deliver
):
    member = Member(make_user())
    shortfall_before = await system_balance(admin, "refund_shortfall")

    response = await deliver("payment.refunded", refund(member, 90))

    assert response.json() == {"status": "applied"}
    assert await system_balance(admin, "refund_shortfall") == shortfall_before - 90
    assert await all_entries(client, member) == []
    assert (await ledger_check(client, service_headers))["ok"] is True


async def _refund_hold(
    client, service_headers, register, top_up
) -> tuple[Member, str, dict[str, Any]]:
    """A member with 1,000 whose refund of 250 holds the money, as the payment service does."""
    member = await register()
    await top_up(member, 1_000)
    refund_id = f"re_{uuid.uuid4().hex[:12]}"
    response = await client.post(
        "/internal/holds",
        json={"user_id": member.id, "amount": 250, "currency": "USD", "reference": refund_id},
        headers=service_headers,
    )
    assert response.status_code == 201, response.text
    return member, refund_id, response.json()


async def test_a_refund_through_a_captured_hold_changes_nothing_more(
    client, service_headers, register, top_up, deliver
):
    member, refund_id, hold = await _refund_hold(client, service_headers, register, top_up)
    captured = await client.post(f"/internal/holds/{hold['id']}/capture", headers=service_headers)
    assert captured.status_code == 200

    response = await deliver(
        "payment.refunded", refund(member, 250, hold_id=hold["id"], refund_id=refund_id)
    )

    assert response.json() == {"status": "applied"}
    assert await balance_of(client, member) == 750
    assert [entry["type"] for entry in await all_entries(client, member)] == ["refund", "top_up"]


async def test_a_refund_through_an_active_hold_captures_it(
    client, service_headers, register, top_up, deliver
):
    member, refund_id, hold = await _refund_hold(client, service_headers, register, top_up)

    await deliver("payment.refunded", refund(member, 250, hold_id=hold["id"], refund_id=refund_id))
    captured = await client.post(f"/internal/holds/{hold['id']}/capture", headers=service_headers)

    after = (await client.get(f"/internal/holds/{hold['id']}", headers=service_headers)).json()
    assert after["status"] == "captured"
    assert captured.json() == after  # the later capture call is a no-op
    balances = (await client.get("/transactions/balance", headers=member.headers)).json()
    assert balances["balances"] == [
        {"currency": "USD", "available": 750, "balance": 750, "held": 0, "pending": 0, "owed": 0}
    ]
    assert [entry["type"] for entry in await all_entries(client, member)] == ["refund", "top_up"]


async def test_a_refund_whose_hold_was_voided_debits_directly(
    client, service_headers, register, top_up, deliver
):
    member, refund_id, hold = await _refund_hold(client, service_headers, register, top_up)
    await client.post(f"/internal/holds/{hold['id']}/void", headers=service_headers)

    await deliver("payment.refunded", refund(member, 250, hold_id=hold["id"], refund_id=refund_id))

    assert await balance_of(client, member) == 750
    assert [entry["type"] for entry in await all_entries(client, member)] == ["refund", "top_up"]


def dispute(member: Member, amount: int, *, dispute_id: str | None = None, **extra: Any):
    return {
        "payment_id": "pay_disputed",
        "dispute_id": dispute_id or str(uuid.uuid4()),
        "user_id": member.id,
        "amount": amount,
        "currency": "USD",
        **extra,
    }


async def wallet_of(client, member: Member) -> dict[str, Any]:
    balances = (await client.get("/transactions/balance", headers=member.headers)).json()
    [usd] = [w for w in balances["balances"] if w["currency"] == "USD"]
    return dict(usd)


async def send(client, sender: Member, recipient: Member, amount: int):
    return await client.post(
        "/transactions/transfers",
        json={"to_email": recipient.email, "amount": amount, "currency": "USD"},
        headers={**sender.headers, "Idempotency-Key": str(uuid.uuid4())},
    )


async def test_a_withdrawal_spares_held_money_and_a_transfer_in_pays_the_debt_first(
    client, admin, service_headers, register, top_up, deliver
):
    debtor, friend = await register(), await register()
    await top_up(debtor, 1_000)
    await top_up(friend, 5_000)
    hold = await client.post(
        "/internal/holds",
        json={
            "user_id": debtor.id,
            "amount": 300,
            "currency": "USD",
            "reference": uuid.uuid4().hex,
        },
        headers=service_headers,
    )
    assert hold.status_code == 201
    fees_before = await system_balance(admin, "dispute_fees")

    withdrawn = dispute(debtor, 2_000, fee=1_500)
    response = await deliver("payment.dispute_funds_withdrawn", withdrawn)

    assert response.json() == {"status": "applied"}
    # The 300 held for a refund stays held; the 700 available goes, 1300 is owed.
    assert await wallet_of(client, debtor) == {
        "currency": "USD",
        "available": 0,
        "balance": 300,
        "held": 300,
        "pending": 0,
        "owed": 1_300,
    }
    assert await system_balance(admin, "dispute_fees") == fees_before + 1_500
    refused = await send(client, debtor, friend, 1)
    assert refused.status_code == 409
    assert refused.json()["type"] == "wallet_has_debt"
    assert refused.json()["owed"] == 1_300

    # Money sent to the debtor pays the debt first, in the transfer's own posting.
    paid = await send(client, friend, debtor, 1_000)
    assert paid.status_code == 201, paid.text
    assert (await wallet_of(client, debtor))["owed"] == 300
    assert (await wallet_of(client, debtor))["available"] == 0
    lines = await all_entries(client, debtor)
    assert [(line["type"], line["amount"]) for line in lines[:2]] == [
        ("debt_settlement", -1_000),
        ("transfer_in", 1_000),
    ]
    again = await send(client, friend, debtor, 500)
    assert again.status_code == 201, again.text
    assert await wallet_of(client, debtor) == {
        "currency": "USD",
        "available": 200,
        "balance": 500,
        "held": 300,
        "pending": 0,
        "owed": 0,
    }
    assert (await send(client, debtor, friend, 200)).status_code == 201
    assert (await ledger_check(client, service_headers))["ok"] is True


async def test_a_reinstatement_that_arrives_first_posts_its_withdrawal_then_gives_back_once(
    client, service_headers, register, top_up, deliver
):
    member = await register()
    await top_up(member, 400)
    data = dispute(member, 1_000, fee=1_500)

    first = await deliver("payment.dispute_funds_reinstated", data)
    late = await deliver("payment.dispute_funds_withdrawn", data)
    repeat = await deliver("payment.dispute_funds_reinstated", data)

    assert first.json() == late.json() == repeat.json() == {"status": "applied"}
    # Withdrawn (400 from the wallet, 600 owed), then given back: the debt cancelled first.
    assert await wallet_of(client, member) == {
        "currency": "USD",
        "available": 400,
        "balance": 400,
        "held": 0,
        "pending": 0,
        "owed": 0,
    }
    types = [line["type"] for line in await all_entries(client, member)]
    assert sorted(types) == sorted(
        ["top_up", "dispute_withdrawal", "dispute_reinstatement", "debt_settlement"]
    )
    assert (await ledger_check(client, service_headers))["ok"] is True
