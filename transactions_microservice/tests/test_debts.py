"""Holds and debts: a wallet whose user owes takes no new hold, and what a hold gives back pays
the debt at once, in the transaction that releases it (a void, an expiry at the wallet's next
use, the sweep)."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from typing import Any

import httpx

from micropay_testing.polling import eventually
from stack.postgres import connect
from transactions_microservice.holds.jobs import hold_expiry_job
from transactions_microservice.tests.helpers import Member, all_entries, ledger_check


async def place(
    client: httpx.AsyncClient, service_headers: dict[str, str], member: Member, amount: int, **kw
) -> httpx.Response:
    return await client.post(
        "/internal/holds",
        json={
            "user_id": member.id,
            "amount": amount,
            "currency": "USD",
            "reference": kw.get("reference") or f"refund:{uuid.uuid4()}",
        },
        headers=service_headers,
    )


async def withdraw(deliver, member: Member, amount: int) -> None:
    """Stripe withdrew `amount` for a dispute of one of the member's top-ups."""
    response = await deliver(
        "payment.dispute_funds_withdrawn",
        {
            "payment_id": f"pay_{uuid.uuid4().hex[:12]}",
            "dispute_id": str(uuid.uuid4()),
            "user_id": member.id,
            "amount": amount,
            "currency": "USD",
        },
    )
    assert response.json() == {"status": "applied"}, response.text


async def usd(client: httpx.AsyncClient, member: Member) -> dict[str, Any]:
    balances = (await client.get("/transactions/balance", headers=member.headers)).json()
    [wallet] = [w for w in balances["balances"] if w["currency"] == "USD"]
    del wallet["currency"], wallet["pending"]
    return dict(wallet)


async def settlements(client: httpx.AsyncClient, member: Member) -> list[tuple[str, int]]:
    """(reference, amount) of the member's debt settlements, oldest first."""
    lines = await all_entries(client, member, type="debt_settlement")
    return [(line["reference"], line["amount"]) for line in reversed(lines)]


async def expire(admin, reference: str) -> None:
    await admin.execute(
        "UPDATE transactions.holds SET expires_at = now() - interval '1 second' "
        "WHERE reference = $1",
        reference,
    )


async def test_a_wallet_that_owes_takes_no_new_hold(
    client, admin, service_headers, register, top_up, deliver
):
    member = await register()
    await top_up(member, 1_000)
    kept = f"refund:{uuid.uuid4()}"
    assert (await place(client, service_headers, member, 300, reference=kept)).status_code == 201
    await withdraw(deliver, member, 1_500)  # 700 available goes, 800 is owed
    assert await usd(client, member) == {"available": 0, "balance": 300, "held": 300, "owed": 800}

    refused_reference = f"refund:{uuid.uuid4()}"
    refused = await place(client, service_headers, member, 100, reference=refused_reference)

    assert refused.status_code == 409, refused.text
    assert refused.headers["content-type"] == "application/problem+json"
    assert refused.json()["type"] == "wallet_has_debt"
    assert refused.json()["owed"] == 800
    assert refused.json()["currency"] == "USD"
    held = await admin.fetchval(
        "SELECT count(*) FROM transactions.holds WHERE reference = $1", refused_reference
    )
    assert held == 0
    # A retry of the hold placed before the debt finds that hold; it reserves nothing new.
    again = await place(client, service_headers, member, 300, reference=kept)
    assert again.status_code == 201, again.text
    assert await usd(client, member) == {"available": 0, "balance": 300, "held": 300, "owed": 800}


async def test_a_voided_hold_pays_the_debt_at_once_and_once(
    client, service_headers, register, top_up, deliver
):
    member = await register()
    await top_up(member, 1_000)
    reference = f"refund:{uuid.uuid4()}"
    hold = (await place(client, service_headers, member, 300, reference=reference)).json()
    await withdraw(deliver, member, 2_000)
    assert await usd(client, member) == {"available": 0, "balance": 300, "held": 300, "owed": 1_300}

    first = await client.post(f"/internal/holds/{hold['id']}/void", headers=service_headers)
    second = await client.post(f"/internal/holds/{hold['id']}/void", headers=service_headers)

    assert first.status_code == second.status_code == 200
    assert first.json()["status"] == "voided"
    # The 300 released went to the debt in the void's own transaction: never spendable.
    assert await usd(client, member) == {"available": 0, "balance": 0, "held": 0, "owed": 1_000}
    assert await settlements(client, member) == [(reference, -300)]
    [line] = await all_entries(client, member, type="debt_settlement")
    assert line["balance_after"] == 0
    assert (await ledger_check(client, service_headers))["ok"] is True


async def test_expired_holds_pay_the_debt_hold_by_hold_in_the_sweep(
    client, tx_app, admin, service_headers, register, top_up, deliver
):
    member, friend = await register(), await register()
    await top_up(member, 1_000)
    first, second = f"a-{uuid.uuid4()}", f"b-{uuid.uuid4()}"
    for reference, amount in ((first, 300), (second, 200)):
        placed = await place(client, service_headers, member, amount, reference=reference)
        assert placed.status_code == 201
    await withdraw(deliver, member, 900)  # 500 available goes, 400 is owed
    assert await usd(client, member) == {"available": 0, "balance": 500, "held": 500, "owed": 400}
    await expire(admin, first)
    await expire(admin, second)

    job = asyncio.create_task(hold_expiry_job(tx_app))
    try:
        for _ in range(100):
            # The balance stops counting an overdue hold at once; the sweep releases it.
            if await admin.fetchval(
                "SELECT count(*) FROM transactions.holds WHERE reference = ANY($1::text[]) "
                "AND status = 'active'",
                [first, second],
            ):
                await asyncio.sleep(0.05)
                continue
            break
    finally:
        job.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await job

    # The first hold pays 300, the second the 100 still owed; its other 100 is the wallet's.
    assert await usd(client, member) == {"available": 100, "balance": 100, "held": 0, "owed": 0}
    assert await settlements(client, member) == [(first, -300), (second, -100)]
    sent = await client.post(
        "/transactions/transfers",
        json={"to_email": friend.email, "amount": 100, "currency": "USD"},
        headers={**member.headers, "Idempotency-Key": str(uuid.uuid4())},
    )
    assert sent.status_code == 201, sent.text
    assert (await ledger_check(client, service_headers))["ok"] is True


async def test_an_overdue_hold_pays_the_debt_before_the_credit_that_finds_it(
    client, admin, service_headers, register, top_up, deliver
):
    member = await register()
    await top_up(member, 1_000)
    reference = f"refund:{uuid.uuid4()}"
    placed = await place(client, service_headers, member, 300, reference=reference)
    assert placed.status_code == 201, placed.text
    await withdraw(deliver, member, 1_500)  # 700 available goes, 800 is owed
    await expire(admin, reference)

    payment_id = await top_up(member, 1_000)

    # The top-up's posting expires the hold first (300 to the debt), then pays the other 500.
    assert await usd(client, member) == {"available": 500, "balance": 500, "held": 0, "owed": 0}
    assert await settlements(client, member) == [(reference, -300), (payment_id, -500)]
    assert (await ledger_check(client, service_headers))["ok"] is True


async def test_releases_and_credits_racing_on_a_wallet_that_owes_add_up(
    client, service_headers, register, top_up, deliver
):
    member, friend = await register(), await register()
    await top_up(member, 1_000)
    await top_up(friend, 1_000)
    hold = (await place(client, service_headers, member, 300)).json()
    await withdraw(deliver, member, 1_700)  # 700 available goes, 1000 is owed

    results = await asyncio.gather(
        client.post(f"/internal/holds/{hold['id']}/void", headers=service_headers),
        top_up(member, 200),
        client.post(
            "/transactions/transfers",
            json={"to_email": member.email, "amount": 100, "currency": "USD"},
            headers={**friend.headers, "Idempotency-Key": str(uuid.uuid4())},
        ),
        place(client, service_headers, member, 1),
    )

    void, _, sent, hold_refused = results
    assert void.status_code == 200, void.text
    assert sent.status_code == 201, sent.text
    assert hold_refused.status_code == 409
    assert hold_refused.json()["type"] == "wallet_has_debt"
    # Whatever the order, every unit that came back or came in paid the debt.
    assert await usd(client, member) == {"available": 0, "balance": 0, "held": 0, "owed": 400}
    assert sorted(amount for _, amount in await settlements(client, member)) == [-300, -200, -100]
    assert (await ledger_check(client, service_headers))["ok"] is True


async def waiting_for_locks(admin) -> int:
    """How many backends of the test database wait for a lock."""
    count: int = await admin.fetchval(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
        "AND wait_event_type = 'Lock'"
    )
    return count


async def test_a_credit_that_waited_for_a_first_dispute_still_pays_the_debt_first(
    client, admin, database, service_headers, register, top_up, deliver
):
    member = await register()
    await top_up(member, 300)
    wallet_id = await admin.fetchval(
        "SELECT id FROM transactions.accounts WHERE user_id = $1 AND currency = 'USD'", member.id
    )
    blocker = await connect(database.admin_url)
    try:
        # Hold the wallet, so that both postings below queue for it in a known order.
        await blocker.execute("BEGIN")
        await blocker.execute(
            "SELECT 1 FROM transactions.accounts WHERE id = $1 FOR UPDATE", wallet_id
        )
        # The user's first dispute opens their debt account in its own transaction, then waits.
        withdrawal = asyncio.create_task(withdraw(deliver, member, 1_000))
        await eventually(lambda: _waiting(admin, 1))
        # A credit looks for a debt account now, finds none yet, and waits behind it.
        credit = asyncio.create_task(top_up(member, 500))
        await eventually(lambda: _waiting(admin, 2))
        await blocker.execute("COMMIT")
        await asyncio.gather(withdrawal, credit)
    finally:
        await blocker.close()

    # The withdrawal took the 300 and left 700 owed; the credit, posted after it, paid 500.
    assert await usd(client, member) == {"available": 0, "balance": 0, "held": 0, "owed": 200}
    assert (await ledger_check(client, service_headers))["ok"] is True


async def _waiting(admin, count: int) -> bool:
    return await waiting_for_locks(admin) == count
