"""Card-funded risk controls: transfer limits per transaction and per day (exact under
concurrency), the allowance at GET /transactions/limits, and card money that waits to settle
unless 3-D Secure authenticated it."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest

from micropay_common.events import PaymentDisputeFundsWithdrawn, PaymentSucceeded, UserRegistered
from micropay_testing.apps import serve_http
from micropay_testing.events import event_envelope
from micropay_testing.http import bearer
from transactions_microservice.main import create_app
from transactions_microservice.settings import TransactionsSettings
from transactions_microservice.tests.helpers import Member, all_entries, ledger_check

PER_TRANSACTION = 500
PER_DAY = 1_000
SETTLE_SECONDS = 3 * 86_400


class Wallets:
    """The transactions app with small limits and a settle period, over real HTTP."""

    def __init__(
        self,
        client: httpx.AsyncClient,
        make_user: Callable[[], Any],
        producer_headers: Callable[[str], dict[str, str]],
    ) -> None:
        self.client = client
        self.make_user = make_user
        self.producer_headers = producer_headers

    async def deliver(self, event: Any) -> None:
        envelope = event_envelope(event)
        response = await self.client.post(
            "/internal/events", json=envelope, headers=self.producer_headers(envelope["type"])
        )
        assert response.status_code == 200, response.text

    async def member(self) -> Member:
        member = Member(self.make_user())
        await self.deliver(UserRegistered(user_id=member.id, email=member.email))
        return member

    async def top_up(self, member: Member, amount: int, *, three_d_secure: bool = True) -> str:
        payment_id = f"pay_{uuid.uuid4().hex[:16]}"
        await self.deliver(
            PaymentSucceeded(
                payment_id=payment_id,
                user_id=member.id,
                amount=amount,
                currency="USD",
                three_d_secure=three_d_secure,
            )
        )
        return payment_id

    async def send(self, sender: Member, recipient: Member, amount: int) -> httpx.Response:
        return await self.client.post(
            "/transactions/transfers",
            json={"to_email": recipient.email, "amount": amount, "currency": "USD"},
            headers={**sender.headers, "Idempotency-Key": str(uuid.uuid4())},
        )

    async def wallet(self, member: Member) -> dict[str, Any]:
        response = await self.client.get("/transactions/balance", headers=member.headers)
        assert response.status_code == 200, response.text
        (usd,) = [w for w in response.json()["balances"] if w["currency"] == "USD"]
        return dict(usd)

    async def limits(self, member: Member) -> dict[str, Any]:
        response = await self.client.get("/transactions/limits", headers=member.headers)
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body


@pytest.fixture(scope="module")
async def wallets(
    tx_settings: TransactionsSettings, make_user, producer_headers
) -> AsyncIterator[Wallets]:
    settings = tx_settings.model_copy(
        update={
            "transfer_limit_per_transaction": f"USD:{PER_TRANSACTION}",
            "transfer_limit_per_day": f"USD:{PER_DAY}",
            "card_funds_settle_seconds": SETTLE_SECONDS,
        }
    )
    async with (
        serve_http(create_app(settings)) as url,
        httpx.AsyncClient(
            base_url=url, limits=httpx.Limits(max_connections=None), timeout=60
        ) as client,
    ):
        yield Wallets(client, make_user, producer_headers)


def next_utc_midnight() -> datetime:
    now = datetime.now(UTC)
    return now.replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=1)


async def test_a_transfer_above_the_per_transaction_limit_is_refused(wallets):
    sender, recipient = await wallets.member(), await wallets.member()
    await wallets.top_up(sender, 5_000)

    response = await wallets.send(sender, recipient, PER_TRANSACTION + 1)

    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    problem = response.json()
    assert problem["type"] == "limit_exceeded"
    assert problem["limit_kind"] == "transfer_per_transaction"
    assert (problem["limit"], problem["currency"]) == (PER_TRANSACTION, "USD")
    assert (await wallets.wallet(sender))["available"] == 5_000
    assert (await wallets.send(sender, recipient, PER_TRANSACTION)).status_code == 201


async def test_the_daily_limit_counts_what_was_sent_and_says_when_it_resets(wallets):
    sender, recipient = await wallets.member(), await wallets.member()
    await wallets.top_up(sender, 5_000)
    assert (await wallets.send(sender, recipient, 400)).status_code == 201
    assert (await wallets.send(sender, recipient, 400)).status_code == 201

    refused = await wallets.send(sender, recipient, 300)

    assert refused.status_code == 422, refused.text
    problem = refused.json()
    assert problem["type"] == "limit_exceeded"
    assert problem["limit_kind"] == "transfer_per_day"
    assert (problem["limit"], problem["remaining"], problem["currency"]) == (PER_DAY, 200, "USD")
    assert datetime.fromisoformat(problem["resets_at"]) == next_utc_midnight()
    # What is left can still be sent, to the cent; then nothing more today.
    assert (await wallets.send(sender, recipient, 200)).status_code == 201
    assert (await wallets.send(sender, recipient, 1)).json()["type"] == "limit_exceeded"

    (usd,) = [a for a in (await wallets.limits(sender))["transfers"] if a["currency"] == "USD"]
    assert usd == {
        "currency": "USD",
        "per_transaction": PER_TRANSACTION,
        "per_day": PER_DAY,
        "sent_today": PER_DAY,
        "remaining_today": 0,
        "resets_at": usd["resets_at"],
    }
    assert datetime.fromisoformat(usd["resets_at"]) == next_utc_midnight()
    # Money received does not count against the recipient's own allowance.
    (received,) = [
        a for a in (await wallets.limits(recipient))["transfers"] if a["currency"] == "USD"
    ]
    assert (received["sent_today"], received["remaining_today"]) == (0, PER_DAY)


async def test_a_daily_limit_refusal_tells_nothing_about_the_recipient(wallets):
    sender = await wallets.member()
    await wallets.top_up(sender, 5_000)
    assert (await wallets.send(sender, await wallets.member(), PER_TRANSACTION)).status_code == 201
    assert (await wallets.send(sender, await wallets.member(), PER_TRANSACTION)).status_code == 201

    nobody = Member(wallets.make_user())  # never registered with the wallet
    for recipient in (await wallets.member(), nobody):
        response = await wallets.send(sender, recipient, 1)
        assert response.status_code == 422
        assert response.json()["type"] == "limit_exceeded"


async def test_concurrent_transfers_never_take_the_day_above_the_limit(wallets, service_headers):
    senders = [await wallets.member() for _ in range(3)]
    recipients = [await wallets.member() for _ in range(4)]
    for sender in senders:
        await wallets.top_up(sender, 10_000)
    # 3 senders x 24 transfers of 100 at once, each sender's day allowing 10 of them; the
    # recipients also send to each other meanwhile, so the wallets' locks interleave.
    attempts = [(sender, recipients[i % 4], 100) for sender in senders for i in range(24)]
    await wallets.top_up(recipients[0], 1_000)
    attempts += [(recipients[0], recipients[1 + i % 3], 50) for i in range(12)]

    responses = await asyncio.gather(*(wallets.send(s, r, amount) for s, r, amount in attempts))

    outcome = Counter(
        (s.id, r.status_code, r.json().get("type"))
        for (s, _, _), r in zip(attempts, responses, strict=True)
    )
    for sender in senders:
        assert outcome[(sender.id, 201, None)] == 10, outcome
        assert outcome[(sender.id, 422, "limit_exceeded")] == 14, outcome
        entries = await all_entries(wallets.client, sender, type="transfer_out")
        assert -sum(entry["amount"] for entry in entries) == PER_DAY
        assert (await wallets.wallet(sender))["available"] == 10_000 - PER_DAY
        (usd,) = [a for a in (await wallets.limits(sender))["transfers"] if a["currency"] == "USD"]
        assert (usd["sent_today"], usd["remaining_today"]) == (PER_DAY, 0)
    # 12 x 50 from the recipient is within its limit, and nothing was refused for it.
    assert outcome[(recipients[0].id, 201, None)] == 12, outcome
    assert (await ledger_check(wallets.client, service_headers))["ok"] is True


async def test_card_money_without_3ds_waits_for_the_settle_period(wallets, admin):
    sender, recipient = await wallets.member(), await wallets.member()
    payment_id = await wallets.top_up(sender, 800, three_d_secure=False)
    await wallets.top_up(sender, 300, three_d_secure=True)

    assert await wallets.wallet(sender) == {
        "currency": "USD",
        "available": 300,
        "balance": 1_100,
        "held": 0,
        "pending": 800,
        "owed": 0,
    }
    refused = await wallets.send(sender, recipient, 301)
    assert refused.status_code == 409, refused.text
    problem = refused.json()
    assert problem["type"] == "insufficient_funds"
    assert (problem["available"], problem["pending"]) == (300, 800)
    # The authenticated money can go at once.
    assert (await wallets.send(sender, recipient, 300)).status_code == 201
    assert (await wallets.limits(sender))["card_funds_settle_seconds"] == SETTLE_SECONDS

    # Once the period has passed (moved into the past here, rather than waited for), it can.
    await settle_now(admin, payment_id)
    assert (await wallets.wallet(sender))["available"] == 800
    assert (await wallets.send(sender, recipient, 500)).status_code == 201


async def test_pending_card_money_can_still_be_held_for_its_refund(wallets, service_headers):
    sender = await wallets.member()
    await wallets.top_up(sender, 800, three_d_secure=False)
    hold = await wallets.client.post(
        "/internal/holds",
        json={
            "user_id": sender.id,
            "amount": 800,
            "currency": "USD",
            "reference": f"refund_{uuid.uuid4().hex}",
        },
        headers=service_headers,
    )
    assert hold.status_code == 201, hold.text
    assert await wallets.wallet(sender) == {
        "currency": "USD",
        "available": 0,
        "balance": 800,
        "held": 800,
        "pending": 0,
        "owed": 0,
    }


async def test_limits_need_a_token(wallets):
    response = await wallets.client.get("/transactions/limits")
    assert response.status_code == 401
    bad = await wallets.client.get("/transactions/limits", headers=bearer("not-a-token"))
    assert bad.status_code == 401


async def settle_now(admin: asyncpg.Connection, payment_id: str) -> None:
    """Move a top-up's settle time into the past, as the admin (the role may not update it)."""
    await admin.execute(
        "UPDATE transactions.top_up_settlements s SET settles_at = now() - interval '1 second'"
        " FROM transactions.ledger_transactions t"
        " WHERE t.id = s.transaction_id AND t.type = 'top_up' AND t.reference = $1",
        payment_id,
    )


async def withdraw_for_dispute(wallets: Wallets, member: Member, amount: int) -> None:
    """Stripe took `amount` back for a dispute of one of the member's top-ups."""
    await wallets.deliver(
        PaymentDisputeFundsWithdrawn(
            payment_id=f"pay_{uuid.uuid4().hex[:16]}",
            dispute_id=str(uuid.uuid4()),
            user_id=member.id,
            amount=amount,
            currency="USD",
        )
    )


async def test_a_dispute_takes_card_money_still_settling(wallets, service_headers):
    # The stolen-card case: the money could not be sent on yet, so the chargeback finds it.
    member = await wallets.member()
    await wallets.top_up(member, 800, three_d_secure=False)

    await withdraw_for_dispute(wallets, member, 800)

    assert await wallets.wallet(member) == {
        "currency": "USD",
        "available": 0,
        "balance": 0,
        "held": 0,
        "pending": 0,
        "owed": 0,
    }
    assert (await ledger_check(wallets.client, service_headers))["ok"] is True


async def test_a_top_up_that_pays_a_debt_waits_to_settle_only_for_what_it_left(
    wallets, service_headers
):
    debtor, friend = await wallets.member(), await wallets.member()
    await withdraw_for_dispute(wallets, debtor, 500)
    assert (await wallets.wallet(debtor))["owed"] == 500

    # 500 of the unauthenticated 800 pays the debt; only the 300 left waits to settle.
    await wallets.top_up(debtor, 800, three_d_secure=False)
    await wallets.top_up(friend, 200)
    assert (await wallets.send(friend, debtor, 200)).status_code == 201

    assert await wallets.wallet(debtor) == {
        "currency": "USD",
        "available": 200,
        "balance": 500,
        "held": 0,
        "pending": 300,
        "owed": 0,
    }
    refused = await wallets.send(debtor, friend, 201)
    assert refused.status_code == 409, refused.text
    assert (refused.json()["type"], refused.json()["pending"]) == ("insufficient_funds", 300)
    assert (await wallets.send(debtor, friend, 200)).status_code == 201
    # A debt settlement is not a transfer out: only the 200 counts against the daily limit.
    (usd,) = [a for a in (await wallets.limits(debtor))["transfers"] if a["currency"] == "USD"]
    assert usd["sent_today"] == 200
    assert (await ledger_check(wallets.client, service_headers))["ok"] is True
