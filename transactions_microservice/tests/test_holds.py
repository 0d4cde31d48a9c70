"""Holds: reserve available money, capture it into a refund entry or release it; idempotent."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from datetime import datetime
from typing import Any

import httpx
import pytest

from transactions_microservice.holds.jobs import hold_expiry_job
from transactions_microservice.tests.helpers import Member, all_entries, balance_of, ledger_check


@pytest.fixture
async def member(register, top_up):
    member = await register()
    await top_up(member, 1_000)
    return member


async def create(client, service_headers, member, amount: int, reference: str | None = None):
    return await client.post(
        "/internal/holds",
        json={
            "user_id": member.id,
            "amount": amount,
            "currency": "USD",
            "reference": reference or f"re_{uuid.uuid4().hex[:12]}",
        },
        headers=service_headers,
    )


async def wallet(client: httpx.AsyncClient, member: Member) -> dict[str, Any]:
    balances = (await client.get("/transactions/balance", headers=member.headers)).json()
    usd: list[dict[str, Any]] = [w for w in balances["balances"] if w["currency"] == "USD"]
    assert len(usd) == 1
    assert usd[0].pop("owed") == 0  # holds never leave a debt
    return usd[0]


async def test_a_hold_reserves_available_money(client, service_headers, member):
    response = await create(client, service_headers, member, 400, "re_reserve_" + member.id)

    assert response.status_code == 201, response.text
    hold = response.json()
    assert hold["user_id"] == member.id
    assert hold["amount"] == 400
    assert hold["currency"] == "USD"
    assert hold["status"] == "active"
    assert hold["reference"] == "re_reserve_" + member.id
    assert hold["transaction_id"] is None
    assert hold["expires_at"] > hold["created_at"]
    assert await wallet(client, member) == {
        "currency": "USD",
        "available": 600,
        "balance": 1_000,
        "held": 400,
        "pending": 0,
    }
    assert (await ledger_check(client, service_headers))["ok"] is True


async def test_held_money_cannot_be_transferred(client, service_headers, register, member):
    other = await register()
    await create(client, service_headers, member, 800)

    response = await client.post(
        "/transactions/transfers",
        json={"to_email": other.email, "amount": 201, "currency": "USD"},
        headers={**member.headers, "Idempotency-Key": uuid.uuid4().hex},
    )

    assert response.status_code == 409
    assert response.json()["type"] == "insufficient_funds"
    assert response.json()["available"] == 200


async def test_held_money_is_weighed_before_the_recipient(client, service_headers, member):
    await create(client, service_headers, member, 800)

    response = await client.post(
        "/transactions/transfers",
        json={
            "to_email": f"nobody-{uuid.uuid4().hex}@example.com",
            "amount": 201,
            "currency": "USD",
        },
        headers={**member.headers, "Idempotency-Key": uuid.uuid4().hex},
    )

    assert response.status_code == 409
    assert response.json()["type"] == "insufficient_funds"
    assert response.json()["available"] == 200


async def test_a_hold_beyond_the_available_balance_is_409(client, service_headers, member):
    await create(client, service_headers, member, 700)

    response = await create(client, service_headers, member, 301)

    assert response.status_code == 409
    assert response.json()["type"] == "insufficient_funds"
    assert response.json()["available"] == 300
    assert (await wallet(client, member))["held"] == 700


async def test_a_hold_on_a_user_without_a_wallet_is_409(client, service_headers, make_user):
    response = await client.post(
        "/internal/holds",
        json={"user_id": "no-such-user", "amount": 1, "currency": "USD", "reference": "re_none"},
        headers=service_headers,
    )
    assert response.status_code == 409
    assert response.json()["type"] == "insufficient_funds"


async def test_a_retried_create_returns_the_same_hold(client, service_headers, member):
    reference = f"re_{uuid.uuid4().hex}"
    first = await create(client, service_headers, member, 300, reference)
    second = await create(client, service_headers, member, 300, reference)

    assert first.status_code == second.status_code == 201
    assert second.json() == first.json()
    assert (await wallet(client, member))["held"] == 300


async def test_concurrent_creates_with_one_reference_make_one_hold(client, service_headers, member):
    reference = f"re_{uuid.uuid4().hex}"
    responses = await asyncio.gather(
        *(create(client, service_headers, member, 100, reference) for _ in range(5))
    )

    assert {response.status_code for response in responses} == {201}
    assert len({response.json()["id"] for response in responses}) == 1
    assert (await wallet(client, member))["held"] == 100


async def test_a_reference_reused_for_another_amount_is_409(client, service_headers, member):
    reference = f"re_{uuid.uuid4().hex}"
    await create(client, service_headers, member, 300, reference)

    response = await create(client, service_headers, member, 301, reference)

    assert response.status_code == 409
    assert response.json()["type"] == "hold_reference_conflict"
    assert (await wallet(client, member))["held"] == 300


async def test_capture_posts_a_refund_entry_once(client, service_headers, member):
    hold = (await create(client, service_headers, member, 400)).json()

    first = await client.post(f"/internal/holds/{hold['id']}/capture", headers=service_headers)
    second = await client.post(f"/internal/holds/{hold['id']}/capture", headers=service_headers)

    assert first.status_code == second.status_code == 200
    assert first.json()["status"] == "captured"
    assert first.json()["transaction_id"] is not None
    assert first.json()["resolved_at"] is not None
    assert second.json() == first.json()
    assert await wallet(client, member) == {
        "currency": "USD",
        "available": 600,
        "balance": 600,
        "held": 0,
        "pending": 0,
    }
    entry = (await all_entries(client, member))[0]
    assert entry["type"] == "refund"
    assert entry["amount"] == -400
    assert entry["balance_after"] == 600
    assert entry["reference"] == hold["reference"]
    assert entry["transaction_id"] == first.json()["transaction_id"]
    assert (await ledger_check(client, service_headers))["ok"] is True


async def test_capture_of_all_the_money_leaves_zero(client, service_headers, member):
    hold = (await create(client, service_headers, member, 1_000)).json()
    response = await client.post(f"/internal/holds/{hold['id']}/capture", headers=service_headers)
    assert response.status_code == 200
    assert await balance_of(client, member) == 0


async def test_void_releases_the_money_once(client, service_headers, member):
    hold = (await create(client, service_headers, member, 400)).json()

    first = await client.post(f"/internal/holds/{hold['id']}/void", headers=service_headers)
    second = await client.post(f"/internal/holds/{hold['id']}/void", headers=service_headers)

    assert first.status_code == second.status_code == 200
    assert first.json()["status"] == "voided"
    assert second.json() == first.json()
    assert await wallet(client, member) == {
        "currency": "USD",
        "available": 1_000,
        "balance": 1_000,
        "held": 0,
        "pending": 0,
    }
    assert len(await all_entries(client, member)) == 1


async def test_a_voided_hold_cannot_be_captured(client, service_headers, member):
    hold = (await create(client, service_headers, member, 400)).json()
    await client.post(f"/internal/holds/{hold['id']}/void", headers=service_headers)

    response = await client.post(f"/internal/holds/{hold['id']}/capture", headers=service_headers)

    assert response.status_code == 409
    assert response.json()["type"] == "hold_not_active"
    assert response.json()["hold_status"] == "voided"
    assert await balance_of(client, member) == 1_000


async def test_a_captured_hold_cannot_be_voided(client, service_headers, member):
    hold = (await create(client, service_headers, member, 400)).json()
    await client.post(f"/internal/holds/{hold['id']}/capture", headers=service_headers)

    response = await client.post(f"/internal/holds/{hold['id']}/void", headers=service_headers)

    assert response.status_code == 409
    assert response.json()["type"] == "hold_not_active"
    assert await balance_of(client, member) == 600


async def test_concurrent_captures_post_once(client, service_headers, member):
    hold = (await create(client, service_headers, member, 400)).json()

    responses = await asyncio.gather(
        *(
            client.post(f"/internal/holds/{hold['id']}/capture", headers=service_headers)
            for _ in range(5)
        )
    )

    assert {response.status_code for response in responses} == {200}
    assert await balance_of(client, member) == 600
    assert [entry["type"] for entry in await all_entries(client, member)] == ["refund", "top_up"]


async def test_unknown_holds_are_404(client, service_headers):
    missing = uuid.uuid4()
    for path in (f"{missing}", f"{missing}/capture", f"{missing}/void"):
        method = client.get if "/" not in path else client.post
        response = await method(f"/internal/holds/{path}", headers=service_headers)
        assert response.status_code == 404
        assert response.json()["type"] == "hold_not_found"


async def test_holds_need_a_service_token(client, member):
    response = await create(client, member.headers, member, 100)
    assert response.status_code == 403
    assert (await wallet(client, member))["held"] == 0


@pytest.mark.parametrize(
    ("field", "value"), [("amount", 0), ("amount", 1.5), ("currency", "ABC"), ("reference", "")]
)
async def test_invalid_hold_requests_are_422(client, service_headers, member, field, value):
    body = {"user_id": member.id, "amount": 100, "currency": "USD", "reference": "re_invalid"}
    body[field] = value
    response = await client.post("/internal/holds", json=body, headers=service_headers)
    assert response.status_code == 422
    assert response.json()["type"] == "validation_error"


async def expire(admin, hold_id: str) -> None:
    """Move a hold's expiry into the past, as if its time had run out."""
    await admin.execute(
        "UPDATE transactions.holds SET expires_at = now() - interval '1 second' WHERE id = $1",
        uuid.UUID(hold_id),
    )


async def test_an_expired_hold_frees_its_money_at_the_next_use_of_the_wallet(
    client, admin, service_headers, register, member
):
    other = await register()
    hold = (await create(client, service_headers, member, 900)).json()
    await expire(admin, hold["id"])

    response = await client.post(
        "/transactions/transfers",
        json={"to_email": other.email, "amount": 1_000, "currency": "USD"},
        headers={**member.headers, "Idempotency-Key": uuid.uuid4().hex},
    )

    assert response.status_code == 201, response.text
    after = (await client.get(f"/internal/holds/{hold['id']}", headers=service_headers)).json()
    assert after["status"] == "expired"
    captured = await client.post(f"/internal/holds/{hold['id']}/capture", headers=service_headers)
    assert captured.status_code == 409
    assert captured.json()["hold_status"] == "expired"
    voided = await client.post(f"/internal/holds/{hold['id']}/void", headers=service_headers)
    assert voided.status_code == 200
    assert voided.json()["status"] == "expired"
    assert (await ledger_check(client, service_headers))["ok"] is True


async def test_an_overdue_hold_cannot_be_captured(client, admin, service_headers, member):
    hold = (await create(client, service_headers, member, 900)).json()
    await expire(admin, hold["id"])

    response = await client.post(f"/internal/holds/{hold['id']}/capture", headers=service_headers)

    assert response.status_code == 409
    assert response.json()["hold_status"] == "expired"
    assert await wallet(client, member) == {
        "currency": "USD",
        "available": 1_000,
        "balance": 1_000,
        "held": 0,
        "pending": 0,
    }


async def test_the_sweep_job_releases_holds_of_idle_wallets(
    client, tx_app, admin, service_headers, member
):
    hold = (await create(client, service_headers, member, 900)).json()
    await expire(admin, hold["id"])

    job = asyncio.create_task(hold_expiry_job(tx_app))
    try:
        for _ in range(100):
            after = (
                await client.get(f"/internal/holds/{hold['id']}", headers=service_headers)
            ).json()
            if after["status"] != "active":
                break
            await asyncio.sleep(0.05)
    finally:
        job.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await job

    assert after["status"] == "expired"
    assert after["resolved_at"] is not None
    assert (await wallet(client, member))["held"] == 0
    assert (await ledger_check(client, service_headers))["ok"] is True


async def test_a_hold_expires_after_the_configured_time(
    client, tx_settings, service_headers, member
):
    hold = (await create(client, service_headers, member, 1)).json()
    lifetime = datetime.fromisoformat(hold["expires_at"]) - datetime.fromisoformat(
        hold["created_at"]
    )
    assert lifetime.total_seconds() == tx_settings.hold_ttl_seconds
