"""Transfers to an email without an account: held, then completed exactly once at sign-up, or
released by a cancel or the expiry; without `invite`, the one refusal that reveals nothing."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import pytest

from micropay_testing.apps import serve
from micropay_testing.events import event_envelope
from transactions_microservice.invitations import service as invitations
from transactions_microservice.main import create_app
from transactions_microservice.state import TransactionsState
from transactions_microservice.tests.helpers import Member, balance_of, ledger_check


def key() -> dict[str, str]:
    return {"Idempotency-Key": str(uuid.uuid4())}


async def send(client, sender: Member, to_email: str, amount: int, headers=None, **extra: Any):
    body = {"to_email": to_email, "amount": amount, "currency": "USD", **extra}
    return await client.post(
        "/transactions/transfers", json=body, headers={**sender.headers, **(headers or key())}
    )


async def wallet(client, member: Member) -> dict[str, int]:
    response = await client.get("/transactions/balance", headers=member.headers)
    for found in response.json()["balances"]:
        if found["currency"] == "USD":
            return {k: found[k] for k in ("available", "balance", "held")}
    return {}


async def status_of(admin, invitation_id: str) -> str:
    return str(
        await admin.fetchval(
            "SELECT status FROM transactions.transfer_invitations WHERE id = $1",
            uuid.UUID(invitation_id),
        )
    )


async def event_types(admin, invitation_id: str) -> list[str]:
    rows = await admin.fetch(
        "SELECT payload FROM transactions.outbox WHERE payload -> 'data' ->> 'invitation_id' = $1 "
        "OR payload -> 'data' ->> 'transfer_id' = $1 ORDER BY id",
        invitation_id,
    )
    return [json.loads(row["payload"])["type"] for row in rows]


async def sweep(tx_app) -> int:
    state = TransactionsState.of(tx_app)
    async with state.sessionmaker() as session, session.begin():
        return await invitations.expire_overdue(session)


def registration(member: Member) -> dict[str, Any]:
    return event_envelope("user.registered", {"user_id": member.id, "email": member.email})


@pytest.fixture
async def alice(register, top_up):
    member = await register()
    await top_up(member, 10_000)
    return member


async def test_an_invited_email_receives_the_money_once_it_signs_up(
    client, admin, service_headers, make_user, deliver, alice
):
    newcomer = Member(make_user())

    invited = await send(client, alice, newcomer.email.upper(), 2_000, invite=True)

    assert invited.status_code == 202, invited.text
    body = invited.json()
    assert (body["status"], body["to_email"], body["amount"]) == ("pending", newcomer.email, 2_000)
    assert body["expires_at"]
    assert await wallet(client, alice) == {"available": 8_000, "balance": 10_000, "held": 2_000}
    assert await event_types(admin, body["id"]) == ["transfer.invited"]

    event = registration(newcomer)
    assert (await deliver(event=event)).status_code == 200
    # The same news again, and again under another event id: nothing more happens.
    assert (await deliver(event=event)).status_code == 200
    assert (await deliver(event=registration(newcomer))).status_code == 200

    assert await status_of(admin, body["id"]) == "completed"
    assert await wallet(client, alice) == {"available": 8_000, "balance": 8_000, "held": 0}
    assert await balance_of(client, newcomer) == 2_000
    assert await event_types(admin, body["id"]) == ["transfer.invited", "transfer.completed"]
    hold = await admin.fetchrow(
        "SELECT h.status, h.transaction_id FROM transactions.holds h "
        "JOIN transactions.transfer_invitations i ON i.hold_id = h.id WHERE i.id = $1",
        uuid.UUID(body["id"]),
    )
    assert (hold["status"], str(hold["transaction_id"])) == ("captured", body["id"])
    assert (await ledger_check(client, service_headers))["ok"] is True


async def test_concurrent_sign_up_news_completes_the_transfer_once(
    client, admin, make_user, deliver, alice
):
    newcomer = Member(make_user())
    invited = (await send(client, alice, newcomer.email, 1_500, invite=True)).json()

    answers = await asyncio.gather(*(deliver(event=registration(newcomer)) for _ in range(4)))

    assert [a.status_code for a in answers] == [200] * 4
    assert await status_of(admin, invited["id"]) == "completed"
    assert await balance_of(client, newcomer) == 1_500
    assert await wallet(client, alice) == {"available": 8_500, "balance": 8_500, "held": 0}


async def test_without_invite_an_unknown_email_gets_the_one_answer_that_reveals_nothing(
    client, make_user, register, alice
):
    stranger = Member(make_user())
    unknown = await send(client, alice, stranger.email, 100)
    assert unknown.status_code == 422
    assert unknown.json()["type"] == "recipient_unavailable"
    assert unknown.json()["detail"] == "This transfer cannot be made to that recipient."
    assert await wallet(client, alice) == {"available": 10_000, "balance": 10_000, "held": 0}
    # With invite, an email that has an account gets the plain transfer.
    bob = await register()
    plain = await send(client, alice, bob.email, 100, invite=True)
    assert plain.status_code == 201, plain.text
    assert set(plain.json()) == {
        "id",
        "amount",
        "currency",
        "to_email",
        "description",
        "created_at",
    }
    assert await balance_of(client, bob) == 100


async def test_cancel_releases_the_hold_and_a_later_sign_up_gets_nothing(
    client, admin, make_user, register, deliver, alice
):
    newcomer = Member(make_user())
    invited = (await send(client, alice, newcomer.email, 3_000, invite=True)).json()
    other = await register()
    assert (
        await client.post(f"/transactions/transfers/{invited['id']}/cancel", headers=other.headers)
    ).status_code == 404

    canceled = await client.post(
        f"/transactions/transfers/{invited['id']}/cancel", headers=alice.headers
    )

    assert canceled.status_code == 200, canceled.text
    assert canceled.json()["status"] == "canceled"
    assert await wallet(client, alice) == {"available": 10_000, "balance": 10_000, "held": 0}
    again = await client.post(
        f"/transactions/transfers/{invited['id']}/cancel", headers=alice.headers
    )
    assert again.status_code == 409
    assert again.json()["transfer_status"] == "canceled"
    assert (await deliver(event=registration(newcomer))).status_code == 200
    assert await balance_of(client, newcomer) == 0
    assert await event_types(admin, invited["id"]) == [
        "transfer.invited",
        "transfer.invitation_canceled",
    ]


async def test_an_expired_invitation_releases_the_money_and_is_not_completed(
    client, tx_app, admin, service_headers, make_user, deliver, alice
):
    newcomer = Member(make_user())
    invited = (await send(client, alice, newcomer.email, 2_500, invite=True)).json()
    await admin.execute(
        "UPDATE transactions.transfer_invitations SET expires_at = now() - interval '1 second' "
        "WHERE id = $1",
        uuid.UUID(invited["id"]),
    )
    assert (await deliver(event=registration(newcomer))).status_code == 200
    assert await status_of(admin, invited["id"]) == "pending"

    assert await sweep(tx_app) >= 1

    assert await status_of(admin, invited["id"]) == "expired"
    assert await wallet(client, alice) == {"available": 10_000, "balance": 10_000, "held": 0}
    assert await balance_of(client, newcomer) == 0
    assert await event_types(admin, invited["id"]) == [
        "transfer.invited",
        "transfer.invitation_expired",
    ]
    assert (await ledger_check(client, service_headers))["ok"] is True


@pytest.mark.parametrize("delay", [0.0, 0.02, 0.05])
async def test_an_invitation_accepted_as_it_expires_has_exactly_one_outcome(
    client, tx_app, admin, service_headers, make_user, deliver, alice, delay
):
    newcomer = Member(make_user())
    invited = (await send(client, alice, newcomer.email, 1_000, invite=True)).json()
    await admin.execute(
        "UPDATE transactions.transfer_invitations "
        "SET expires_at = now() + make_interval(secs => $2) WHERE id = $1",
        uuid.UUID(invited["id"]),
        delay,
    )

    async def sweep_after_expiry() -> None:
        await asyncio.sleep(delay)
        await sweep(tx_app)

    await asyncio.gather(deliver(event=registration(newcomer)), sweep_after_expiry())
    await sweep(tx_app)  # whatever the sign-up left pending is past its time now

    outcome = await status_of(admin, invited["id"])
    assert outcome in ("completed", "expired")
    received = await balance_of(client, newcomer)
    assert received == (1_000 if outcome == "completed" else 0)
    assert await wallet(client, alice) == {
        "available": 10_000 - received,
        "balance": 10_000 - received,
        "held": 0,
    }
    closing = [t for t in await event_types(admin, invited["id"]) if t != "transfer.invited"]
    assert closing == (
        ["transfer.completed"] if outcome == "completed" else ["transfer.invitation_expired"]
    )
    assert (await ledger_check(client, service_headers))["ok"] is True


async def test_a_retried_invitation_holds_once_and_a_short_wallet_holds_nothing(
    client, admin, make_user, alice
):
    newcomer = Member(make_user())
    same = key()
    first = await send(client, alice, newcomer.email, 4_000, same, invite=True)
    again = await send(client, alice, newcomer.email, 4_000, same, invite=True)
    assert (first.status_code, again.status_code) == (202, 202)
    assert again.json() == first.json()
    assert again.headers["Idempotent-Replayed"] == "true"
    assert await wallet(client, alice) == {"available": 6_000, "balance": 10_000, "held": 4_000}

    short = await send(client, alice, Member(make_user()).email, 6_001, invite=True)
    assert short.status_code == 409
    assert short.json()["type"] == "insufficient_funds"
    assert short.json()["available"] == 6_000
    assert await wallet(client, alice) == {"available": 6_000, "balance": 10_000, "held": 4_000}
    to_self = await send(client, alice, alice.email, 1, invite=True)
    assert to_self.status_code == 400


async def test_invitations_count_in_the_days_transfer_limit_when_made(
    tx_settings, make_user, producer_headers
):
    settings = tx_settings.model_copy(update={"transfer_limit_per_day": "USD:3000"})
    sender, first, second = (Member(make_user()) for _ in range(3))
    async with serve(create_app(settings)) as client:
        for event in (
            registration(sender),
            event_envelope(
                "payment.succeeded",
                {
                    "payment_id": f"pay_{uuid.uuid4().hex[:12]}",
                    "user_id": sender.id,
                    "amount": 10_000,
                    "currency": "USD",
                },
            ),
        ):
            delivered = await client.post(
                "/internal/events", json=event, headers=producer_headers(event["type"])
            )
            assert delivered.status_code == 200, delivered.text

        assert (await send(client, sender, first.email, 2_000, invite=True)).status_code == 202
        over = await send(client, sender, second.email, 1_001, invite=True)
        assert over.status_code == 422
        assert (over.json()["type"], over.json()["remaining"]) == ("limit_exceeded", 1_000)
        assert (await send(client, sender, second.email, 1_000, invite=True)).status_code == 202
        assert await wallet(client, sender) == {
            "available": 7_000,
            "balance": 10_000,
            "held": 3_000,
        }


async def test_pending_invitations_count_in_the_days_limit_of_ordinary_transfers(
    tx_settings, make_user, producer_headers
):
    settings = tx_settings.model_copy(update={"transfer_limit_per_day": "USD:3000"})
    sender, invited, recipient = (Member(make_user()) for _ in range(3))
    async with serve(create_app(settings)) as client:
        for event in (
            registration(sender),
            registration(recipient),
            event_envelope(
                "payment.succeeded",
                {
                    "payment_id": f"pay_{uuid.uuid4().hex[:12]}",
                    "user_id": sender.id,
                    "amount": 10_000,
                    "currency": "USD",
                },
            ),
        ):
            delivered = await client.post(
                "/internal/events", json=event, headers=producer_headers(event["type"])
            )
            assert delivered.status_code == 200, delivered.text

        assert (await send(client, sender, invited.email, 2_000, invite=True)).status_code == 202
        limits = await client.get("/transactions/limits", headers=sender.headers)
        usd = next(row for row in limits.json()["transfers"] if row["currency"] == "USD")
        assert (usd["sent_today"], usd["remaining_today"]) == (2_000, 1_000)

        over = await send(client, sender, recipient.email, 1_001)
        assert over.status_code == 422
        assert (over.json()["type"], over.json()["remaining"]) == ("limit_exceeded", 1_000)
        assert (await send(client, sender, recipient.email, 1_000)).status_code == 201
        assert await wallet(client, sender) == {
            "available": 7_000,
            "balance": 9_000,
            "held": 2_000,
        }
