"""Money request events: the requester hears of every change, the payer once they have an
account, and an email nobody signed up with gets nothing."""

from __future__ import annotations

import uuid

from notifications_microservice.tests.helpers import new_user


async def rows_for(admin, user_id: str, event_type: str):
    return await admin.fetch(
        "SELECT channel, recipient, subject, body_text, payload FROM notifications.notifications "
        "WHERE user_id = $1 AND event_type = $2 ORDER BY channel",
        user_id,
        event_type,
    )


def request_data(requester, payer_email: str, payer_id: str | None) -> dict[str, object]:
    return {
        "request_id": str(uuid.uuid4()),
        "requester_id": requester[0],
        "requester_email": requester[1],
        "payer_id": payer_id,
        "payer_email": payer_email,
        "amount": 1250,
        "currency": "USD",
        "note": "Tickets",
    }


async def test_a_request_to_an_email_without_an_account_tells_only_the_requester(send_event, admin):
    requester = new_user()
    stranger_email = f"{uuid.uuid4().hex}@example.com"
    data = request_data(requester, stranger_email, None)

    response = await send_event("money_request.created", data)

    assert response.json() == {"status": "applied"}
    rows = await rows_for(admin, requester[0], "money_request.created")
    assert [row["channel"] for row in rows] == ["email", "push"]
    assert rows[0]["subject"] == f"You asked {stranger_email} for 12.50 USD"
    assert rows[0]["recipient"] == requester[1]
    # The requester's email is the one message naming the request; the stranger gets nothing.
    naming = await admin.fetchval(
        "SELECT count(*) FROM notifications.notifications WHERE body_text LIKE $1",
        f"%{data['request_id']}%",
    )
    assert naming == 1
    assert not await admin.fetchval(
        "SELECT count(*) FROM notifications.notifications WHERE recipient = $1", stranger_email
    )


async def test_the_payer_is_asked_and_both_sides_hear_it_was_paid(send_event, admin):
    requester, payer = new_user(), new_user()
    data = request_data(requester, payer[1], payer[0])

    received = await send_event("money_request.received", data)
    paid = await send_event("money_request.paid", {**data, "transfer_id": "tr_1"})

    assert received.json() == paid.json() == {"status": "applied"}
    asked = await rows_for(admin, payer[0], "money_request.received")
    assert asked[0]["subject"] == f"{requester[1]} asks you for 12.50 USD"
    assert asked[0]["recipient"] == payer[1]
    assert "Note: Tickets" in asked[0]["body_text"]
    assert await rows_for(admin, requester[0], "money_request.received") == []
    to_payer = await rows_for(admin, payer[0], "money_request.paid")
    to_requester = await rows_for(admin, requester[0], "money_request.paid")
    assert to_payer[0]["subject"] == f"You paid the request from {requester[1]} for 12.50 USD"
    assert to_requester[0]["subject"] == f"{payer[1]} paid your request for 12.50 USD"
    assert "Transfer: tr_1" in to_requester[0]["body_text"]


async def test_a_cancelled_request_tells_the_payer_only_once_it_reached_them(send_event, admin):
    requester, payer = new_user(), new_user()
    waiting = request_data(requester, payer[1], None)
    reached = request_data(requester, payer[1], payer[0])

    await send_event("money_request.canceled", waiting)
    await send_event("money_request.expired", reached)

    canceled = await rows_for(admin, requester[0], "money_request.canceled")
    assert canceled[0]["subject"] == f"You cancelled your request to {payer[1]} for 12.50 USD"
    assert await rows_for(admin, payer[0], "money_request.canceled") == []
    expired = await rows_for(admin, payer[0], "money_request.expired")
    assert expired[0]["subject"] == f"The request from {requester[1]} for 12.50 USD has expired"
