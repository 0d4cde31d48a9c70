"""Events in: each becomes notification records per channel per user, once, in its inbox
transaction; an email whose address is not known yet waits for it instead of being lost."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime

import pytest

from micropay_common.events import (
    EventEnvelope,
    EventType,
    PaymentSucceeded,
    TransferCompleted,
    UserRegistered,
)
from micropay_common.inbox import EventMeta
from micropay_common.services import ServiceName
from micropay_testing.events import event_envelope
from notifications_microservice.notifications.handlers import (
    on_payment_succeeded,
    on_transfer_completed,
    on_user_registered,
)
from notifications_microservice.state import NotificationsState
from notifications_microservice.tests.helpers import create_webhook, new_user


async def rows_for(admin, user_id: str):
    return await admin.fetch(
        "SELECT channel, event_type, recipient, subject, body_text, body_html, payload, status,"
        " webhook_endpoint_id FROM notifications.notifications WHERE user_id = $1"
        " ORDER BY channel",
        user_id,
    )


async def test_user_registered_records_the_email_and_a_welcome_on_each_channel(send_event, admin):
    user_id, email = new_user()
    response = await send_event("user.registered", {"user_id": user_id, "email": email})
    assert response.json() == {"status": "applied"}
    assert (
        await admin.fetchval("SELECT email FROM notifications.users WHERE user_id = $1", user_id)
        == email
    )
    rows = await rows_for(admin, user_id)
    assert [row["channel"] for row in rows] == ["email", "push"]
    mail, push = rows
    assert mail["recipient"] == email
    assert mail["subject"] == "Welcome to MicroPay"
    assert email in mail["body_text"]
    assert email in mail["body_html"]
    assert (mail["status"], push["status"]) == ("pending", "pending")
    assert push["body_text"] == "Your MicroPay wallet is ready."


@pytest.mark.parametrize(
    ("event_type", "data", "subject", "text_fragment"),
    [
        (
            "payment.succeeded",
            {"payment_id": "pay_1", "amount": 1234, "currency": "USD"},
            "Top-up of 12.34 USD received",
            "Payment: pay_1",
        ),
        (
            "payment.failed",
            {
                "payment_id": "pay_2",
                "amount": 1500,
                "currency": "JPY",
                "decline_code": "expired_card",
            },
            "Top-up of 1,500 JPY failed",
            "did not go through: your card has expired",
        ),
        (
            "payment.refunded",
            {"payment_id": "pay_3", "refund_id": "re_1", "amount": 5, "currency": "KWD"},
            "Refund of 0.005 KWD",
            "Refund: re_1",
        ),
        (
            "payment.refund_failed",
            {
                "payment_id": "pay_4",
                "refund_id": "re_2",
                "amount": 700,
                "currency": "USD",
                "hold_id": None,
                "was_refunded": True,
                "failure_code": "expired_or_canceled_card",
            },
            "Refund of 7.00 USD failed",
            "could not be completed: the card has expired or was cancelled",
        ),
    ],
)
async def test_payment_events_notify_their_user_with_amounts_in_minor_units(
    send_event, admin, event_type, data, subject, text_fragment
):
    user_id, email = new_user()
    await send_event("user.registered", {"user_id": user_id, "email": email})
    response = await send_event(event_type, {**data, "user_id": user_id})
    assert response.json() == {"status": "applied"}
    rows = [row for row in await rows_for(admin, user_id) if row["event_type"] == event_type]
    assert [row["channel"] for row in rows] == ["email", "push"]
    mail = rows[0]
    assert mail["subject"] == subject
    assert mail["recipient"] == email
    assert text_fragment in mail["body_text"]
    assert rows[1]["payload"]["data"]["amount"] == data["amount"]


async def test_transfer_notifies_both_sides_and_learns_their_emails(send_event, admin):
    sender_id, sender_email = new_user()
    recipient_id, recipient_email = new_user()
    event = {
        "transfer_id": "tr_1",
        "from_user_id": sender_id,
        "from_email": sender_email,
        "to_user_id": recipient_id,
        "to_email": recipient_email,
        "amount": 2500,
        "currency": "EUR",
        "description": "<b>rent</b> & bills",
    }
    response = await send_event("transfer.completed", event)
    assert response.json() == {"status": "applied"}
    sent = await rows_for(admin, sender_id)
    received = await rows_for(admin, recipient_id)
    assert sent[0]["subject"] == f"You sent 25.00 EUR to {recipient_email}"
    assert sent[0]["recipient"] == sender_email
    assert received[0]["subject"] == f"You received 25.00 EUR from {sender_email}"
    assert received[0]["recipient"] == recipient_email
    # The user's note is plain in the text body and escaped in the HTML body.
    assert "Note: <b>rent</b> & bills" in received[0]["body_text"]
    assert "Note: &lt;b&gt;rent&lt;/b&gt; &amp; bills" in received[0]["body_html"]
    assert "<b>rent" not in received[0]["body_html"]
    assert sent[1]["payload"]["data"]["direction"] == "sent"
    assert received[1]["payload"]["data"]["direction"] == "received"


async def test_a_repeated_event_adds_nothing(send_event, admin):
    user_id, email = new_user()
    event = event_envelope("user.registered", {"user_id": user_id, "email": email})
    assert (await send_event("", {}, body=event)).json() == {"status": "applied"}
    assert (await send_event("", {}, body=event)).json() == {"status": "duplicate"}
    assert len(await rows_for(admin, user_id)) == 2


async def test_webhook_records_go_to_subscribed_enabled_endpoints_only(
    client, send_event, admin, registered
):
    user = await registered()
    wanted = await create_webhook(client, user, "http://127.0.0.1:9/a", ["payment.succeeded"])
    await create_webhook(client, user, "http://127.0.0.1:9/b", ["payment.failed"])
    await send_event(
        "payment.succeeded",
        {"payment_id": "pay_w", "user_id": user.sub, "amount": 100, "currency": "USD"},
    )
    rows = [r for r in await rows_for(admin, user.sub) if r["event_type"] == "payment.succeeded"]
    assert [r["channel"] for r in rows] == ["email", "push", "webhook"]
    hook = rows[2]
    assert str(hook["webhook_endpoint_id"]) == wanted["id"]
    assert hook["payload"]["type"] == "payment.succeeded"
    assert hook["payload"]["data"] == {"payment_id": "pay_w", "amount": 100, "currency": "USD"}


async def test_an_email_waits_for_its_address_and_is_addressed_when_it_arrives(
    send_event, admin, worker, moto_endpoint
):
    user_id, email = new_user()
    await send_event(
        "payment.succeeded",
        {"payment_id": "pay_early", "user_id": user_id, "amount": 700, "currency": "USD"},
    )
    waiting = await admin.fetchrow(
        "SELECT recipient, status FROM notifications.notifications"
        " WHERE user_id = $1 AND channel = 'email'",
        user_id,
    )
    assert (waiting["recipient"], waiting["status"]) == (None, "pending")
    await worker.run_once()  # sends the push, leaves the email waiting
    assert (
        await admin.fetchval(
            "SELECT attempts FROM notifications.notifications"
            " WHERE user_id = $1 AND channel = 'email'",
            user_id,
        )
        == 0
    )

    await send_event("user.registered", {"user_id": user_id, "email": email})
    addressed = await admin.fetch(
        "SELECT event_type, recipient FROM notifications.notifications"
        " WHERE user_id = $1 AND channel = 'email' ORDER BY event_type",
        user_id,
    )
    assert [(r["event_type"], r["recipient"]) for r in addressed] == [
        ("payment.succeeded", email),
        ("user.registered", email),
    ]


def meta_of(event: PaymentSucceeded | UserRegistered | TransferCompleted) -> EventMeta:
    """What the events router hands a handler besides the event, for a fresh event."""
    return EventMeta(uuid.uuid4(), event.event_type, datetime.now(UTC), event.producer)


async def test_concurrent_events_of_one_user_never_strand_an_email(app, admin):
    """The payment's handler holds the user's row; the registration waits for it, then sees
    the payment's waiting email and addresses it."""
    user_id, email = new_user()
    payment = PaymentSucceeded(payment_id="pay_race", user_id=user_id, amount=1, currency="USD")
    registration = UserRegistered(user_id=user_id, email=email)
    sessionmaker = NotificationsState.of(app).sessionmaker
    async with sessionmaker() as first:
        await on_payment_succeeded(first, payment, meta_of(payment))  # not committed yet

        async def register() -> None:
            async with sessionmaker() as second, second.begin():
                await on_user_registered(second, registration, meta_of(registration))

        task = asyncio.create_task(register())
        await asyncio.sleep(0.3)
        assert not task.done(), "the registration must wait for the payment's transaction"
        await first.commit()
    await asyncio.wait_for(task, 10)
    assert (
        await admin.fetchval(
            "SELECT count(*) FROM notifications.notifications"
            " WHERE user_id = $1 AND channel = 'email' AND recipient IS NULL",
            user_id,
        )
        == 0
    )


async def test_a_transfer_bringing_the_address_after_another_event_addresses_its_email(app, admin):
    """The transfer's handler learns the recipient's email only after the payment's transaction
    (which left an email waiting) commits: it must still address that email."""
    user_id, email = new_user()
    sender_id, sender_email = new_user()
    payment = PaymentSucceeded(payment_id="pay_learn", user_id=user_id, amount=1, currency="USD")
    transfer = TransferCompleted(
        transfer_id=str(uuid.uuid4()),
        from_user_id=sender_id,
        to_user_id=user_id,
        from_email=sender_email,
        to_email=email,
        amount=5,
        currency="USD",
        description=None,
    )
    sessionmaker = NotificationsState.of(app).sessionmaker
    async with sessionmaker() as first:
        await on_payment_succeeded(first, payment, meta_of(payment))  # not committed yet

        async def transferred() -> None:
            async with sessionmaker() as second, second.begin():
                await on_transfer_completed(second, transfer, meta_of(transfer))

        task = asyncio.create_task(transferred())
        await asyncio.sleep(0.3)
        assert not task.done(), "the transfer must wait for the payment's transaction"
        await first.commit()
    await asyncio.wait_for(task, 10)
    emails = await admin.fetch(
        "SELECT event_type, recipient FROM notifications.notifications"
        " WHERE user_id = $1 AND channel = 'email' ORDER BY event_type",
        user_id,
    )
    assert [(r["event_type"], r["recipient"]) for r in emails] == [
        ("payment.succeeded", email),
        ("transfer.completed", email),
    ]


async def test_malformed_event_data_is_refused_and_recorded_nowhere(send_event, admin):
    event = event_envelope("payment.succeeded", {"payment_id": "p", "user_id": "u", "amount": -5})
    response = await send_event("", {}, body=event)
    assert response.status_code == 422
    problem = response.json()
    assert problem["type"] == "validation_error"
    assert {tuple(error["loc"]) for error in problem["errors"]} == {
        ("body", "data", "amount"),
        ("body", "data", "currency"),
    }
    assert (
        await admin.fetchval(
            "SELECT count(*) FROM notifications.inbox WHERE event_id = $1", uuid.UUID(event["id"])
        )
        == 0
    )
    assert (
        await admin.fetchval(
            "SELECT count(*) FROM notifications.notifications WHERE event_id = $1",
            uuid.UUID(event["id"]),
        )
        == 0
    )


def test_webhook_payload_timestamp_is_the_event_time():
    occurred = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
    event = EventEnvelope(
        id=uuid.uuid4(),
        type=EventType.USER_REGISTERED,
        occurred_at=occurred,
        producer=ServiceName.AUTH,
        data={},
    )
    assert event.occurred_at.isoformat() == "2024-05-01T12:00:00+00:00"
