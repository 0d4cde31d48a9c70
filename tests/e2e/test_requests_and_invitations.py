"""Money requests and invitations end to end through the gateway: a request is paid once and
both sides hear of it by email; a request to an address nobody has answers the same and
reaches it when it signs up; money sent with `invite` to such an address is held, the address
is invited by email, and the transfer completes when it signs up, or comes back on cancel."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx
import pytest

from micropay_testing.polling import eventually
from tests.e2e.client import Api, User

pytestmark = pytest.mark.timeout(180)


async def ask(api: Api, requester: User, from_email: str, amount: int, **extra: Any):
    return await api.client.post(
        "/transactions/requests",
        json={"from_email": from_email, "amount": amount, "currency": "USD", **extra},
        headers={**requester.auth, "Idempotency-Key": str(uuid.uuid4())},
    )


async def pay(api: Api, payer: User, request_id: str) -> httpx.Response:
    return await api.client.post(
        f"/transactions/requests/{request_id}/pay",
        headers={**payer.auth, "Idempotency-Key": str(uuid.uuid4())},
    )


async def requests_to_pay(api: Api, payer: User) -> list[dict[str, Any]]:
    response = await api.client.get(
        "/transactions/requests", params={"role": "payer"}, headers=payer.auth
    )
    assert response.status_code == 200, response.text
    return list(response.json()["data"])


async def test_a_request_is_paid_once_and_both_sides_are_told(api: Api) -> None:
    dana, eli = await api.register("dana"), await api.register("eli")
    topped = await api.top_up(eli, 5_000)
    assert topped.status_code == 201, topped.text
    await api.balance_becomes(eli, 5_000)

    asked = await ask(api, dana, eli.email, 1_250, note="Tickets")
    assert asked.status_code == 201, asked.text
    request = asked.json()
    assert (request["status"], request["from_email"]) == ("open", eli.email)
    assert [r["id"] for r in await requests_to_pay(api, eli)] == [request["id"]]

    # Two payments at once, with different keys: one pays, the other finds it paid.
    answers = await asyncio.gather(pay(api, eli, request["id"]), pay(api, eli, request["id"]))
    assert sorted(a.status_code for a in answers) == [201, 409]
    paid = next(a for a in answers if a.status_code == 201).json()
    assert paid["status"] == "paid"
    await api.balance_becomes(dana, 1_250)
    await api.balance_becomes(eli, 3_750)
    lines = [line for line in await api.history(dana) if line["type"] == "transfer_in"]
    assert [line["reference"] for line in lines] == [paid["transfer_id"]]

    async def both_told() -> bool:
        to_dana = [m["subject"] for m in await api.emails_to(dana.email)]
        to_eli = [m["subject"] for m in await api.emails_to(eli.email)]
        return (
            f"{eli.email} paid your request for 12.50 USD" in to_dana
            and f"{dana.email} asks you for 12.50 USD" in to_eli
            and f"You paid the request from {dana.email} for 12.50 USD" in to_eli
        )

    await eventually(both_told, within=30)
    assert (await api.ledger_check())["ok"] is True


async def test_a_request_to_an_address_nobody_has_waits_for_its_sign_up(api: Api) -> None:
    fay = await api.register("fay")
    newcomer_email = f"gil-{uuid.uuid4().hex[:10]}@example.com"
    known = await api.register("hal")

    waiting = await ask(api, fay, newcomer_email, 300)
    ordinary = await ask(api, fay, known.email, 300)
    assert (waiting.status_code, ordinary.status_code) == (201, 201)
    varying = {"id", "from_email", "created_at", "expires_at"}
    assert {k: v for k, v in waiting.json().items() if k not in varying} == {
        k: v for k, v in ordinary.json().items() if k not in varying
    }

    registered = await api.sign_up(newcomer_email)
    assert registered.status_code == 201, registered.text
    gil = await api.login(newcomer_email, registered.json()["user_id"])

    async def reached() -> bool:
        return [r["id"] for r in await requests_to_pay(api, gil)] == [waiting.json()["id"]]

    await eventually(reached, within=30)
    declined = await api.client.post(
        f"/transactions/requests/{waiting.json()['id']}/decline", headers=gil.auth
    )
    assert declined.status_code == 200, declined.text
    assert declined.json()["status"] == "declined"
    canceled = await api.client.post(
        f"/transactions/requests/{ordinary.json()['id']}/cancel", headers=fay.auth
    )
    assert canceled.json()["status"] == "canceled"

    async def fay_told() -> bool:
        subjects = [m["subject"] for m in await api.emails_to(fay.email)]
        return f"{newcomer_email} declined your request for 3.00 USD" in subjects

    await eventually(fay_told, within=30)


async def invite(api: Api, sender: User, to_email: str, amount: int) -> httpx.Response:
    return await api.client.post(
        "/transactions/transfers",
        json={"to_email": to_email, "amount": amount, "currency": "USD", "invite": True},
        headers={**sender.auth, "Idempotency-Key": str(uuid.uuid4())},
    )


async def test_money_sent_to_an_address_without_an_account_arrives_when_it_signs_up(
    api: Api,
) -> None:
    ivy = await api.register("ivy")
    assert (await api.top_up(ivy, 4_000)).status_code == 201
    await api.balance_becomes(ivy, 4_000)
    newcomer_email = f"jon-{uuid.uuid4().hex[:10]}@example.com"

    without = await api.transfer(ivy, newcomer_email, 1_500)
    assert without.status_code == 422
    assert without.json()["type"] == "recipient_unavailable"
    invited = await invite(api, ivy, newcomer_email, 1_500)
    assert invited.status_code == 202, invited.text
    pending = invited.json()
    assert (pending["status"], pending["to_email"]) == ("pending", newcomer_email)
    await api.balance_becomes(ivy, 2_500)

    async def invitation_mailed() -> bool:
        subjects = [m["subject"] for m in await api.emails_to(newcomer_email)]
        return f"{ivy.email} sent you 15.00 USD on MicroPay" in subjects

    await eventually(invitation_mailed, within=30)

    registered = await api.sign_up(newcomer_email)
    assert registered.status_code == 201, registered.text
    jon = await api.login(newcomer_email, registered.json()["user_id"])
    await api.balance_becomes(jon, 1_500, within=30)
    await api.balance_becomes(ivy, 2_500)
    received = [line for line in await api.history(jon) if line["type"] == "transfer_in"]
    assert [(line["reference"], line["counterparty_email"]) for line in received] == [
        (pending["id"], ivy.email)
    ]
    late = await api.client.post(
        f"/transactions/transfers/{pending['id']}/cancel", headers=ivy.auth
    )
    assert late.status_code == 409
    assert late.json()["transfer_status"] == "completed"
    assert (await api.ledger_check())["ok"] is True


async def test_a_cancelled_invitation_gives_the_money_back(api: Api) -> None:
    kim = await api.register("kim")
    assert (await api.top_up(kim, 2_000)).status_code == 201
    await api.balance_becomes(kim, 2_000)
    address = f"lee-{uuid.uuid4().hex[:10]}@example.com"
    pending = (await invite(api, kim, address, 800)).json()
    await api.balance_becomes(kim, 1_200)

    canceled = await api.client.post(
        f"/transactions/transfers/{pending['id']}/cancel", headers=kim.auth
    )

    assert canceled.status_code == 200, canceled.text
    assert canceled.json()["status"] == "canceled"
    await api.balance_becomes(kim, 2_000)

    async def kim_told() -> bool:
        subjects = [m["subject"] for m in await api.emails_to(kim.email)]
        return (
            f"You cancelled the 8.00 USD waiting for {address}; it is back in your wallet"
            in subjects
        )

    await eventually(kim_told, within=30)
