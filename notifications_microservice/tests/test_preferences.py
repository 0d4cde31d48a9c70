"""Notification preferences: every channel on by default, partial changes applied all or
nothing, security notices always on, and the choice applied when the event happens."""

from __future__ import annotations

from typing import Any

from micropay_common.events import events_consumed_by
from micropay_common.services import ServiceName
from micropay_testing.http import bearer
from notifications_microservice.preferences.service import SECURITY_NOTICES
from notifications_microservice.tests.helpers import create_webhook, emails_to, topic_publishes

PREFERENCES = "/notifications/preferences"


async def statuses(admin, user_id: str, event_type: str) -> dict[str, str]:
    rows = await admin.fetch(
        "SELECT channel, status FROM notifications.notifications"
        " WHERE user_id = $1 AND event_type = $2",
        user_id,
        event_type,
    )
    return {row["channel"]: row["status"] for row in rows}


async def pay(send_event, user_id: str, payment_id: str, event_type: str = "payment.succeeded"):
    data: dict[str, Any] = {
        "payment_id": payment_id,
        "user_id": user_id,
        "amount": 1250,
        "currency": "USD",
    }
    if event_type.startswith("payment.dispute"):
        data["dispute_id"] = f"dp_{payment_id}"
    response = await send_event(event_type, data)
    assert response.json() == {"status": "applied"}, response.text


async def test_every_event_type_is_on_for_every_channel_for_a_user_with_no_row(
    client, registered, admin
):
    user = await registered()
    response = await client.get(PREFERENCES, headers=bearer(user.access_token))
    assert response.status_code == 200
    body = response.json()
    # The list is the contract's: an event type routed to this service appears with no change.
    assert set(body) == set(events_consumed_by(ServiceName.NOTIFICATIONS))
    for event_type, channels in body.items():
        assert channels == {
            "email": True,
            "push": True,
            "webhook": True,
            "security_notice": event_type in SECURITY_NOTICES,
        }
    assert body["payment.dispute_opened"]["security_notice"] is True
    assert body["payment.refund_failed"]["security_notice"] is True
    assert body["transfer.completed"]["security_notice"] is False
    stored = await admin.fetchval(
        "SELECT count(*) FROM notifications.notification_preferences WHERE user_id = $1", user.sub
    )
    assert stored == 0


async def test_a_partial_map_changes_only_the_channels_it_names(client, registered):
    user = await registered()
    headers = bearer(user.access_token)
    first = await client.put(
        PREFERENCES, json={"transfer.completed": {"email": False}}, headers=headers
    )
    assert first.status_code == 200, first.text
    assert first.json()["transfer.completed"] == {
        "email": False,
        "push": True,
        "webhook": True,
        "security_notice": False,
    }
    second = await client.put(
        PREFERENCES,
        json={"transfer.completed": {"push": False}, "payment.succeeded": {"webhook": False}},
        headers=headers,
    )
    assert second.status_code == 200, second.text
    after = (await client.get(PREFERENCES, headers=headers)).json()
    assert after == second.json()
    assert after["transfer.completed"]["email"] is False  # kept from the first change
    assert after["transfer.completed"]["push"] is False
    assert after["payment.succeeded"] == {
        "email": True,
        "push": True,
        "webhook": False,
        "security_notice": False,
    }
    assert after["payment.failed"]["email"] is True
    # What GET answers can be sent back as it is.
    again = await client.put(PREFERENCES, json=after, headers=headers)
    assert again.status_code == 200, again.text
    assert again.json() == after
    # Preferences are the caller's own.
    other = await registered()
    theirs = (await client.get(PREFERENCES, headers=bearer(other.access_token))).json()
    assert theirs["transfer.completed"]["email"] is True


async def test_unknown_event_types_and_channels_are_422_and_change_nothing(client, registered):
    user = await registered()
    headers = bearer(user.access_token)
    before = (await client.get(PREFERENCES, headers=headers)).json()

    unknown_type = await client.put(
        PREFERENCES,
        json={"transfer.completed": {"email": False}, "transfer.teleported": {"email": False}},
        headers=headers,
    )
    assert unknown_type.status_code == 422
    assert unknown_type.headers["content-type"] == "application/problem+json"
    problem = unknown_type.json()
    assert problem["type"] == "unknown_event_type"
    assert problem["unknown"] == ["transfer.teleported"]
    assert "transfer.completed" in problem["known"]

    unknown_channel = await client.put(
        PREFERENCES,
        json={"payment.succeeded": {"email": False, "sms": False}},
        headers=headers,
    )
    assert unknown_channel.status_code == 422
    assert unknown_channel.headers["content-type"] == "application/problem+json"
    assert unknown_channel.json()["type"] == "validation_error"

    not_a_bool = await client.put(
        PREFERENCES, json={"payment.succeeded": {"email": "maybe"}}, headers=headers
    )
    assert not_a_bool.status_code == 422

    assert (await client.get(PREFERENCES, headers=headers)).json() == before


async def test_a_security_notice_cannot_be_turned_off(client, registered):
    user = await registered()
    headers = bearer(user.access_token)
    refused = await client.put(
        PREFERENCES,
        json={
            "payment.succeeded": {"email": False},
            "payment.dispute_opened": {"push": False},
        },
        headers=headers,
    )
    assert refused.status_code == 422
    assert refused.headers["content-type"] == "application/problem+json"
    problem = refused.json()
    assert problem["type"] == "security_notice_required"
    assert problem["event_types"] == ["payment.dispute_opened"]
    after = (await client.get(PREFERENCES, headers=headers)).json()
    assert after["payment.succeeded"]["email"] is True  # all or nothing
    assert after["payment.dispute_opened"]["push"] is True
    # Keeping one on is no change, and allowed.
    kept = await client.put(
        PREFERENCES, json={"payment.refund_failed": {"email": True}}, headers=headers
    )
    assert kept.status_code == 200
    assert kept.json()["payment.refund_failed"]["email"] is True


async def test_a_security_notice_goes_out_on_every_channel_whatever_is_stored(
    registered, send_event, worker, admin, moto_endpoint, aws
):
    user = await registered()
    # A row the API would refuse (written before the event type became a security notice).
    await admin.execute(
        "INSERT INTO notifications.notification_preferences (user_id, event_type, email, push,"
        " webhook) VALUES ($1, 'payment.dispute_opened', false, false, false)",
        user.sub,
    )
    await pay(send_event, user.sub, "pay_disputed", "payment.dispute_opened")
    assert await statuses(admin, user.sub, "payment.dispute_opened") == {
        "email": "pending",
        "push": "pending",
    }
    await worker.run_once()
    assert await statuses(admin, user.sub, "payment.dispute_opened") == {
        "email": "sent",
        "push": "sent",
    }
    assert len(emails_to(moto_endpoint, user.username)) == 2  # the welcome and the notice


async def test_a_channel_turned_off_is_recorded_skipped_and_never_sent(
    client, registered, send_event, worker, admin, moto_endpoint, aws
):
    user = await registered()
    headers = bearer(user.access_token)
    await client.put(PREFERENCES, json={"transfer.completed": {"email": False}}, headers=headers)
    sender = await registered()
    response = await send_event(
        "transfer.completed",
        {
            "transfer_id": "tr_pref",
            "from_user_id": sender.sub,
            "from_email": sender.username,
            "to_user_id": user.sub,
            "to_email": user.username,
            "amount": 500,
            "currency": "USD",
        },
    )
    assert response.json() == {"status": "applied"}
    assert await statuses(admin, user.sub, "transfer.completed") == {
        "email": "skipped",
        "push": "pending",
    }
    await worker.run_once()
    assert await statuses(admin, user.sub, "transfer.completed") == {
        "email": "skipped",
        "push": "sent",
    }
    # The sender's own preferences are untouched: both of their channels went out.
    assert await statuses(admin, sender.sub, "transfer.completed") == {
        "email": "sent",
        "push": "sent",
    }
    received = [m for m in emails_to(moto_endpoint, user.username) if "received" in m["subject"]]
    assert received == []
    pushed = [
        p
        for p in topic_publishes(moto_endpoint, aws.sns_topic_arn, user.sub)
        if p["message"]["event"] == "transfer.completed"
    ]
    assert len(pushed) == 1
    listed = await client.get("/notifications?status=skipped", headers=headers)
    assert [(n["channel"], n["event"]) for n in listed.json()["data"]] == [
        ("email", "transfer.completed")
    ]


async def test_webhook_endpoints_get_the_event_unless_the_webhook_channel_is_off(
    client, registered, send_event, worker, receiver, admin
):
    recorder, base = receiver
    user = await registered()
    headers = bearer(user.access_token)
    await create_webhook(client, user, f"{base}/hooks/prefs", ["payment.succeeded"], recorder)
    await pay(send_event, user.sub, "pay_hook_on")
    await client.put(PREFERENCES, json={"payment.succeeded": {"webhook": False}}, headers=headers)
    await pay(send_event, user.sub, "pay_hook_off")
    await worker.run_once()
    delivered = [r.verified["data"]["payment_id"] for r in recorder.at("/hooks/prefs")]
    assert delivered == ["pay_hook_on"]
    rows = await admin.fetch(
        "SELECT payload->'data'->>'payment_id' AS payment, status"
        " FROM notifications.notifications WHERE user_id = $1 AND channel = 'webhook'",
        user.sub,
    )
    assert {row["payment"]: row["status"] for row in rows} == {
        "pay_hook_on": "sent",
        "pay_hook_off": "skipped",
    }


async def test_preferences_changed_while_a_delivery_is_pending_apply_to_later_events_only(
    client, registered, send_event, worker, admin, moto_endpoint
):
    user = await registered()
    headers = bearer(user.access_token)
    await worker.run_once()  # the welcome
    # The event happens with email on; the worker has not sent it yet when email is turned off.
    await pay(send_event, user.sub, "pay_before")
    assert (await statuses(admin, user.sub, "payment.succeeded"))["email"] == "pending"
    turned_off = await client.put(
        PREFERENCES, json={"payment.succeeded": {"email": False}}, headers=headers
    )
    assert turned_off.status_code == 200
    # And one happens while it is off; email is turned back on before the worker runs.
    await pay(send_event, user.sub, "pay_while_off")
    turned_on = await client.put(
        PREFERENCES, json={"payment.succeeded": {"email": True}}, headers=headers
    )
    assert turned_on.status_code == 200
    await worker.run_once()

    rows = await admin.fetch(
        "SELECT payload->'data'->>'payment_id' AS payment, status"
        " FROM notifications.notifications"
        " WHERE user_id = $1 AND channel = 'push' AND event_type = 'payment.succeeded'",
        user.sub,
    )
    assert {row["payment"]: row["status"] for row in rows} == {
        "pay_before": "sent",
        "pay_while_off": "sent",
    }
    emails = await admin.fetch(
        "SELECT subject, body_text, status FROM notifications.notifications"
        " WHERE user_id = $1 AND channel = 'email' AND event_type = 'payment.succeeded'",
        user.sub,
    )
    by_payment = {
        ("pay_before" if "pay_before" in row["body_text"] else "pay_while_off"): row["status"]
        for row in emails
    }
    # Each as its preferences stood when it happened.
    assert by_payment == {"pay_before": "sent", "pay_while_off": "skipped"}
    receipts = [m for m in emails_to(moto_endpoint, user.username) if "Top-up" in m["subject"]]
    assert len(receipts) == 1
    assert "pay_before" in receipts[0]["body"]
