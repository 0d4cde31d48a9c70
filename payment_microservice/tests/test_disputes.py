"""Disputes: the disputed amount leaves the wallet as far as it covers it, the rest is owed.

localstripe has no disputes; the project's wrapper (stack/localstripe_server.py) opens one on a
real charge as a card holder's bank would (`POST /_micropay/disputes`), moves it as Stripe does
(evidence `winning_evidence` / `losing_evidence`), answers `GET /v1/disputes/{id}` and sends
signed `charge.dispute.*` events. The service must retrieve the Dispute from Stripe rather than
trust an event's body, because anyone who learns or guesses the signing secret's output for
one event, or replays an old one, could otherwise claim a dispute won or lost: here events of
our own making (repeats, stale bodies, forgeries) are signed with the endpoint's secret, and
only what Stripe answers for the dispute counts.
"""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg
import httpx

from micropay_testing.cognito import CognitoUser
from micropay_testing.http import bearer
from micropay_testing.polling import eventually
from payment_microservice.tests.helpers import PaymentStack, outbox_events
from payment_microservice.tests.test_idempotency_keys import register, transfer
from payment_microservice.tests.test_refund_lifecycle import PENDING_REFUND_CARD
from payment_microservice.tests.test_refunds import _payment_row, _stripe_refunds

FEE = 1500
"""Stripe's dispute fee, as the localstripe wrapper charges it."""


async def _funded(
    stack: PaymentStack,
    db: asyncpg.Connection,
    user: CognitoUser,
    amount: int,
    method: str = "pm_card_visa",
) -> dict[str, Any]:
    """A succeeded top-up, once the wallet service has posted it."""
    response = await stack.pay(user, amount=amount, payment_method=method)
    assert response.status_code == 201, response.text
    payment: dict[str, Any] = response.json()

    async def posted() -> bool:
        found = await db.fetchval(
            "SELECT 1 FROM transactions.ledger_transactions WHERE type = 'top_up' "
            "AND reference = $1",
            payment["id"],
        )
        return found is not None

    await eventually(posted)
    return payment


async def _available_is(stack: PaymentStack, user: CognitoUser, amount: int) -> bool:
    return (await stack.wallet(user))["available"] == amount


async def _wallet_is(stack: PaymentStack, user: CognitoUser, **expected: int) -> bool:
    wallet = await stack.wallet(user)
    return all(wallet[key] == value for key, value in expected.items())


async def _charge_of(db: asyncpg.Connection, payment_id: str) -> str:
    charge: str = await db.fetchval(
        "SELECT stripe_charge_id FROM payments.payments WHERE id = $1", uuid.UUID(payment_id)
    )
    assert charge
    return charge


async def _dispute_row(db: asyncpg.Connection, stripe_dispute_id: str) -> Any:
    return await db.fetchrow(
        "SELECT id, status, funds, amount, fee, fee_returned, stripe_status FROM payments.disputes "
        "WHERE stripe_dispute_id = $1",
        stripe_dispute_id,
    )


async def _dispute_is(db: asyncpg.Connection, stripe_id: str, status: str, funds: str) -> bool:
    row = await _dispute_row(db, stripe_id)
    return row is not None and (row["status"], row["funds"]) == (status, funds)


async def _postings(db: asyncpg.Connection, dispute_id: uuid.UUID) -> list[str]:
    rows = await db.fetch(
        "SELECT type FROM transactions.ledger_transactions WHERE reference = $1 ORDER BY type",
        str(dispute_id),
    )
    return [row["type"] for row in rows]


async def _entries(db: asyncpg.Connection, dispute_id: uuid.UUID, type_: str) -> list[Any]:
    return await db.fetch(  # type: ignore[no-any-return]
        "SELECT a.kind, a.system_code, e.type, e.amount FROM transactions.entries e "
        "JOIN transactions.ledger_transactions t ON t.id = e.transaction_id "
        "JOIN transactions.accounts a ON a.id = e.account_id "
        "WHERE t.reference = $1 AND t.type = $2 ORDER BY e.id",
        str(dispute_id),
        type_,
    )


async def _ledger_ok(stack: PaymentStack, headers: dict[str, str]) -> None:
    async with httpx.AsyncClient(base_url=stack.transactions_url) as client:
        response = await client.get("/internal/ledger/check", headers=headers)
    assert response.status_code == 200, response.text
    assert response.json()["ok"] is True, response.json()["violations"]


async def _payment(stack: PaymentStack, user: CognitoUser, payment_id: str) -> dict[str, Any]:
    response = await stack.client.get(f"/payments/{payment_id}", headers=bearer(user.access_token))
    assert response.status_code == 200, response.text
    found: dict[str, Any] = response.json()
    return found


async def _sent_events(stack: PaymentStack, dispute: dict[str, Any]) -> None:
    """Every dispute event type again, signed by us, each with a fresh event id."""
    for event_type in (
        "charge.dispute.created",
        "charge.dispute.funds_withdrawn",
        "charge.dispute.updated",
        "charge.dispute.closed",
        "charge.dispute.funds_reinstated",
    ):
        response = await stack.send_event(event_type, dispute)
        assert response.status_code == 200, response.text


async def test_lost_dispute_takes_what_the_wallet_has_and_records_the_rest_as_owed(
    payment_stack, make_user, db, service_account_headers
):
    payer, friend = make_user(), make_user()
    await register(payment_stack, friend, service_account_headers["auth"])
    payment = await _funded(payment_stack, db, payer, 1000)
    await eventually(lambda: _available_is(payment_stack, payer, 1000))
    sent = await transfer(payment_stack, payer, friend, 700, str(uuid.uuid4()))
    assert sent.status_code == 201, sent.text

    # The card holder's bank disputes the whole top-up; Stripe withdraws it at once.
    dispute = await payment_stack.open_dispute(charge=await _charge_of(db, payment["id"]))
    await eventually(lambda: _dispute_is(db, dispute["id"], "open", "withdrawn"))
    await eventually(lambda: _wallet_is(payment_stack, payer, available=0, balance=0, owed=700))
    row = await _dispute_row(db, dispute["id"])
    assert row["amount"] == 1000
    assert row["fee"] == FEE
    shown = (await _payment(payment_stack, payer, payment["id"]))["dispute"]
    assert shown["status"] == "open"
    assert shown["amount"] == 1000
    assert shown["funds"] == "withdrawn"
    assert shown["reason"] == "fraudulent"

    # The wallet took 300, the debt account 700; Stripe's fee is the platform's, not the user's.
    entries = await _entries(db, row["id"], "dispute_withdrawal")
    by_account = {(e["kind"], e["system_code"], e["type"]): e["amount"] for e in entries}
    assert by_account == {
        ("system", "disputes", "dispute_withdrawal"): 1000,
        ("user", None, "dispute_withdrawal"): -300,
        ("debt", None, "dispute_withdrawal"): -700,
        ("system", "dispute_fees", "dispute_fee"): FEE,
        ("system", "platform_funds", "dispute_fee"): -FEE,
    }

    # A wallet that owes cannot send, even what a later top-up would leave it.
    refused = await transfer(payment_stack, payer, friend, 1, str(uuid.uuid4()))
    assert refused.status_code == 409, refused.text
    assert refused.json()["type"] == "wallet_has_debt"
    assert refused.json()["owed"] == 700
    assert refused.json()["currency"] == "USD"

    # Lost: nothing more moves (the amount was withdrawn already).
    await payment_stack.stripe_update(
        f"disputes/{dispute['id']}", **{"evidence[uncategorized_text]": "losing_evidence"}
    )
    await eventually(lambda: _dispute_is(db, dispute["id"], "lost", "withdrawn"))
    assert await _postings(db, row["id"]) == ["dispute_withdrawal"]
    assert (await _payment(payment_stack, payer, payment["id"]))["dispute"]["status"] == "lost"
    assert len(await outbox_events(db, "payment.dispute_closed", payment["id"])) == 1

    # Money coming in pays the debt first, in the same posting.
    await _funded(payment_stack, db, payer, 500)
    await eventually(lambda: _wallet_is(payment_stack, payer, available=0, owed=200))
    still = await transfer(payment_stack, payer, friend, 1, str(uuid.uuid4()))
    assert still.status_code == 409
    assert still.json()["owed"] == 200
    await _funded(payment_stack, db, payer, 500)
    await eventually(lambda: _wallet_is(payment_stack, payer, available=300, owed=0))
    settled = await db.fetchval(
        "SELECT sum(e.amount) FROM transactions.entries e JOIN transactions.accounts a "
        "ON a.id = e.account_id WHERE a.debtor_id = $1 AND e.type = 'debt_settlement'",
        payer.sub,
    )
    assert settled == 700
    ok = await transfer(payment_stack, payer, friend, 300, str(uuid.uuid4()))
    assert ok.status_code == 201, ok.text
    await _ledger_ok(payment_stack, service_account_headers["payment"])


async def test_won_dispute_cancels_its_debt_and_gives_the_rest_back_once(
    payment_stack, make_user, db, service_account_headers
):
    payer, friend = make_user(), make_user()
    await register(payment_stack, friend, service_account_headers["auth"])
    payment = await _funded(payment_stack, db, payer, 1000)
    await eventually(lambda: _available_is(payment_stack, payer, 1000))
    sent = await transfer(payment_stack, payer, friend, 300, str(uuid.uuid4()))
    assert sent.status_code == 201, sent.text

    dispute = await payment_stack.open_dispute(
        payment_intent=str(
            await db.fetchval(
                "SELECT stripe_payment_intent_id FROM payments.payments WHERE id = $1",
                uuid.UUID(payment["id"]),
            )
        )
    )
    await eventually(lambda: _wallet_is(payment_stack, payer, available=0, owed=300))

    decided = await payment_stack.stripe_update(
        f"disputes/{dispute['id']}", **{"evidence[uncategorized_text]": "winning_evidence"}
    )
    assert decided["status"] == "won"
    await eventually(lambda: _dispute_is(db, dispute["id"], "won", "reinstated"))
    # The 300 owed is cancelled first, the other 700 is the wallet's again.
    await eventually(lambda: _wallet_is(payment_stack, payer, available=700, owed=0))
    row = await _dispute_row(db, dispute["id"])
    entries = await _entries(db, row["id"], "dispute_reinstatement")
    assert sorted((e["kind"], e["type"], e["amount"]) for e in entries) == sorted(
        [
            ("system", "dispute_reinstatement", -1000),
            ("user", "dispute_reinstatement", 1000),
            ("user", "debt_settlement", -300),
            ("debt", "debt_settlement", 300),
        ]
    )
    shown = (await _payment(payment_stack, payer, payment["id"]))["dispute"]
    assert (shown["status"], shown["funds"]) == ("won", "reinstated")

    # Stripe's events again, each with a new id, and the same ones repeated: nothing moves.
    await _sent_events(payment_stack, decided)
    assert await _postings(db, row["id"]) == ["dispute_reinstatement", "dispute_withdrawal"]
    for event_type in (
        "payment.dispute_opened",
        "payment.dispute_funds_withdrawn",
        "payment.dispute_funds_reinstated",
        "payment.dispute_closed",
    ):
        assert len({e["event_id"] for e in await outbox_events(db, event_type, payment["id"])}) == 1
    assert await _wallet_is(payment_stack, payer, available=700, owed=0)
    await _ledger_ok(payment_stack, service_account_headers["payment"])


async def _debt_settlements(stack: PaymentStack, user: CognitoUser) -> list[tuple[str, int]]:
    """(reference, amount) of the user's `debt_settlement` history entries, newest first."""
    async with httpx.AsyncClient(base_url=stack.transactions_url) as client:
        response = await client.get(
            "/transactions",
            params={"type": "debt_settlement", "limit": 100},
            headers=bearer(user.access_token),
        )
    assert response.status_code == 200, response.text
    return [(entry["reference"], entry["amount"]) for entry in response.json()["data"]]


async def test_a_wallet_that_owes_cannot_refund_another_top_up(
    payment_stack, make_user, db, stripe_client, service_account_headers
):
    payer, friend = make_user(), make_user()
    await register(payment_stack, friend, service_account_headers["auth"])
    disputed = await _funded(payment_stack, db, payer, 1000)
    await eventually(lambda: _available_is(payment_stack, payer, 1000))
    sent = await transfer(payment_stack, payer, friend, 700, str(uuid.uuid4()))
    assert sent.status_code == 201, sent.text
    dispute = await payment_stack.open_dispute(charge=await _charge_of(db, disputed["id"]))
    await payment_stack.stripe_update(
        f"disputes/{dispute['id']}", **{"evidence[uncategorized_text]": "losing_evidence"}
    )
    await eventually(lambda: _dispute_is(db, dispute["id"], "lost", "withdrawn"))
    # Another top-up pays 500 of the 700 owed; 200 is still owed.
    other = await _funded(payment_stack, db, payer, 500)
    await eventually(lambda: _wallet_is(payment_stack, payer, available=0, owed=200))

    key = str(uuid.uuid4())
    refused = await payment_stack.refund(payer, other["id"], key=key, amount=100)

    assert refused.status_code == 409, refused.text
    assert refused.headers["content-type"] == "application/problem+json"
    assert refused.json()["type"] == "wallet_has_debt"
    assert refused.json()["owed"] == 200
    assert refused.json()["currency"] == "USD"
    # Refused before Stripe: no refund there, no hold on the wallet, nothing to undo.
    assert _stripe_refunds(stripe_client, await _payment_row(db, other["id"])) == []
    row = await db.fetchrow(
        "SELECT id, status, failure_code, hold_id, stripe_refund_id FROM payments.refunds "
        "WHERE payment_id = $1",
        uuid.UUID(other["id"]),
    )
    assert (row["status"], row["failure_code"]) == ("failed", "wallet_has_debt")
    assert (row["hold_id"], row["stripe_refund_id"]) == (None, None)
    assert await outbox_events(db, "payment.refund_failed", str(row["id"])) == []
    replayed = await payment_stack.refund(payer, other["id"], key=key, amount=100)
    assert replayed.status_code == 409
    assert replayed.json()["type"] == "wallet_has_debt"
    assert replayed.headers["Idempotent-Replayed"] == "true"
    assert await _wallet_is(payment_stack, payer, available=0, balance=0, held=0, owed=200)

    # Once the debt is paid, the wallet's money can be refunded again.
    await _funded(payment_stack, db, payer, 500)
    await eventually(lambda: _wallet_is(payment_stack, payer, available=300, owed=0))
    ok = await payment_stack.refund(payer, other["id"], amount=100)
    assert ok.status_code == 201, ok.text
    assert _stripe_refunds(stripe_client, await _payment_row(db, other["id"])) == [100]
    await _ledger_ok(payment_stack, service_account_headers["payment"])


async def test_a_failed_refunds_hold_pays_the_debt_a_dispute_left(
    payment_stack, make_user, card, db, service_account_headers
):
    payer, friend = make_user(), make_user()
    await register(payment_stack, friend, service_account_headers["auth"])
    refunded = await _funded(payment_stack, db, payer, 1000, card(PENDING_REFUND_CARD))
    await eventually(lambda: _available_is(payment_stack, payer, 1000))
    created = await payment_stack.refund(payer, refunded["id"], amount=300)
    assert created.status_code == 201, created.text
    refund = created.json()
    assert refund["status"] == "pending"  # Stripe has it pending; its 300 stays held
    stripe_refund_id = await db.fetchval(
        "SELECT stripe_refund_id FROM payments.refunds WHERE id = $1", uuid.UUID(refund["id"])
    )
    disputed = await _funded(payment_stack, db, payer, 1000)
    await eventually(lambda: _available_is(payment_stack, payer, 1700))
    sent = await transfer(payment_stack, payer, friend, 1500, str(uuid.uuid4()))
    assert sent.status_code == 201, sent.text
    # The dispute takes the 200 available and leaves 800 owed; the held 300 is spared.
    await payment_stack.open_dispute(charge=await _charge_of(db, disputed["id"]))
    await eventually(
        lambda: _wallet_is(payment_stack, payer, available=0, balance=300, held=300, owed=800)
    )

    # Stripe fails the refund: its hold is released, and the 300 pays the debt at once.
    await payment_stack.stripe_update(
        f"refunds/{stripe_refund_id}", status="failed", failure_reason="expired_or_canceled_card"
    )
    await eventually(
        lambda: _wallet_is(payment_stack, payer, available=0, balance=0, held=0, owed=500)
    )
    status = await db.fetchval(
        "SELECT status FROM payments.refunds WHERE id = $1", uuid.UUID(refund["id"])
    )
    assert status == "failed"
    assert await _debt_settlements(payment_stack, payer) == [(f"refund:{refund['id']}", -300)]
    refused = await transfer(payment_stack, payer, friend, 1, str(uuid.uuid4()))
    assert refused.status_code == 409
    assert refused.json()["owed"] == 500
    await _ledger_ok(payment_stack, service_account_headers["payment"])


async def test_events_out_of_order_or_stale_follow_what_stripe_says_now(
    payment_stack, make_user, db, service_account_headers
):
    payer = make_user()
    payment = await _funded(payment_stack, db, payer, 1000)
    await eventually(lambda: _available_is(payment_stack, payer, 1000))
    charge = await _charge_of(db, payment["id"])
    # An inquiry: opened without a withdrawal; Stripe's own events for it are in flight.
    dispute = await payment_stack.open_dispute(charge=charge, withdraw="false", amount="400")

    # A closed-lost event arrives first, before created: the dispute is still open at Stripe,
    # so all that happens is that it is recorded as Stripe has it.
    stale = {**dispute, "status": "lost"}
    response = await payment_stack.send_event("charge.dispute.closed", stale)
    assert response.status_code == 200, response.text
    row = await _dispute_row(db, dispute["id"])
    assert (row["status"], row["funds"], row["amount"]) == ("open", "none", 400)
    assert await _available_is(payment_stack, payer, 1000)

    # Stripe decides it lost: the amount is withdrawn at the close. The reinstatement event
    # of someone else's making arrives first; Stripe's answer (lost) is what counts.
    closed = await payment_stack.stripe_post(f"/v1/disputes/{dispute['id']}/close")
    assert closed["status"] == "lost"
    response = await payment_stack.send_event("charge.dispute.funds_reinstated", closed)
    assert response.status_code == 200
    await eventually(lambda: _dispute_is(db, dispute["id"], "lost", "withdrawn"))
    await eventually(lambda: _wallet_is(payment_stack, payer, available=600, owed=0))
    await _sent_events(payment_stack, closed)
    assert await _postings(db, row["id"]) == ["dispute_withdrawal"]
    assert await _wallet_is(payment_stack, payer, available=600, owed=0)
    await _ledger_ok(payment_stack, service_account_headers["payment"])


async def test_forged_dispute_events_change_nothing(payment_stack, make_user, db):
    payer = make_user()
    payment = await _funded(payment_stack, db, payer, 1000)
    await eventually(lambda: _available_is(payment_stack, payer, 1000))
    charge = await _charge_of(db, payment["id"])
    forged_id = f"dp_forged{uuid.uuid4().hex[:10]}"
    forged = {
        "id": forged_id,
        "object": "dispute",
        "charge": charge,
        "amount": 1000,
        "currency": "usd",
        "status": "lost",
        "reason": "fraudulent",
        "balance_transactions": [{"amount": -1000, "fee": FEE, "currency": "usd"}],
    }
    # Not signed with the endpoint's secret: refused before anything is read.
    payload = b'{"id": "evt_x", "type": "charge.dispute.closed", "data": {"object": {}}}'
    unsigned = await payment_stack.client.post(
        "/payments/webhooks/stripe",
        content=payload,
        headers={"Stripe-Signature": payment_stack.sign(payload, secret="whsec_not_ours")},
    )
    assert unsigned.status_code == 400
    # Signed, but Stripe has no such dispute: ignored, nothing recorded, nothing taken.
    for event_type in ("charge.dispute.created", "charge.dispute.funds_withdrawn"):
        response = await payment_stack.send_event(event_type, forged)
        assert response.status_code == 200
        assert response.json()["outcome"] == "ignored"
    assert await _dispute_row(db, forged_id) is None
    assert (await _payment(payment_stack, payer, payment["id"]))["dispute"] is None
    assert await outbox_events(db, "payment.dispute_funds_withdrawn", payment["id"]) == []
    assert await _wallet_is(payment_stack, payer, available=1000, owed=0)


async def test_the_openapi_document_shows_a_payments_dispute(payment_stack):
    document = (await payment_stack.client.get("/openapi.json")).json()
    schemas = document["components"]["schemas"]
    dispute = schemas["PaymentRead"]["properties"]["dispute"]
    assert {"$ref": "#/components/schemas/DisputeSummary"} in dispute["anyOf"]
    assert set(schemas["DisputeSummary"]["required"]) >= {"status", "amount", "currency", "funds"}
    assert schemas["DisputeStatus"]["enum"] == ["open", "won", "lost"]
