"""The delivery worker sends email through SES and push through SNS (moto), records the
outcome, skips disabled device endpoints, retries provider errors and fails permanent ones."""

from __future__ import annotations

import json

from micropay_testing.http import bearer
from notifications_microservice.aws import build_clients
from notifications_microservice.tests.helpers import (
    emails_to,
    endpoint_messages,
    new_user,
    topic_publishes,
)


async def notification(admin, user_id: str, channel: str, event_type: str | None = None):
    query = (
        "SELECT id, status, attempts, sent_at, last_error, provider_message_id, delivered_to"
        " FROM notifications.notifications WHERE user_id = $1 AND channel = $2"
    )
    args: list[object] = [user_id, channel]
    if event_type:
        query += " AND event_type = $3"
        args.append(event_type)
    return await admin.fetchrow(query, *args)


async def test_email_goes_out_through_ses_with_the_rendered_html(
    send_event, worker, admin, moto_endpoint, aws
):
    sender_id, sender_email = new_user()
    recipient_id, recipient_email = new_user()
    await send_event(
        "transfer.completed",
        {
            "transfer_id": "tr_mail",
            "from_user_id": sender_id,
            "from_email": sender_email,
            "to_user_id": recipient_id,
            "to_email": recipient_email,
            "amount": 150000,
            "currency": "JPY",
            "description": "<script>alert(1)</script>",
        },
    )
    assert await worker.run_once() == 4
    [mail] = emails_to(moto_endpoint, recipient_email)
    assert mail["source"] == aws.ses_sender
    assert mail["subject"] == f"You received 150,000 JPY from {sender_email}"
    assert "<strong>150,000 JPY</strong>" in mail["body"]
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in mail["body"]
    assert "<script>" not in mail["body"]
    row = await notification(admin, recipient_id, "email")
    assert row["status"] == "sent"
    assert row["sent_at"] is not None
    assert row["provider_message_id"] == mail["id"]
    assert len(emails_to(moto_endpoint, sender_email)) == 1
    # Sent rows are not claimed again.
    assert await worker.run_once() == 0
    assert len(emails_to(moto_endpoint, recipient_email)) == 1


async def test_push_goes_to_the_topic_with_user_id_and_to_each_device(
    client, registered, send_event, worker, admin, moto_endpoint, aws
):
    user = await registered()
    headers = bearer(user.access_token)
    phone = await client.post(
        "/notifications/devices",
        json={"platform": "fcm", "token": f"fcm-{user.sub}"},
        headers=headers,
    )
    tablet = await client.post(
        "/notifications/devices",
        json={"platform": "apns", "token": f"apns-{user.sub}"},
        headers=headers,
    )
    assert (phone.status_code, tablet.status_code) == (201, 201)
    await send_event(
        "payment.succeeded",
        {"payment_id": "pay_push", "user_id": user.sub, "amount": 999, "currency": "USD"},
    )
    await worker.run_once()

    published = [
        p
        for p in topic_publishes(moto_endpoint, aws.sns_topic_arn, user.sub)
        if p["message"]["event"] == "payment.succeeded"
    ]
    assert len(published) == 1
    assert published[0]["attributes"]["user_id"] == {"Type": "String", "Value": user.sub}
    assert published[0]["message"]["body"] == "9.99 USD was added to your wallet."
    arns = dict(
        await admin.fetch(
            "SELECT platform, endpoint_arn FROM notifications.devices WHERE user_id = $1", user.sub
        )
    )
    [fcm_message] = [m for m in endpoint_messages(moto_endpoint, arns["fcm"]) or [] if "9.99" in m]
    fcm = json.loads(json.loads(fcm_message)["GCM"])
    assert fcm["notification"] == {
        "title": "Top-up of 9.99 USD received",
        "body": "9.99 USD was added to your wallet.",
    }
    [apns_message] = [
        m for m in endpoint_messages(moto_endpoint, arns["apns"]) or [] if "9.99" in m
    ]
    assert json.loads(json.loads(apns_message)["APNS"])["aps"]["alert"]["title"] == (
        "Top-up of 9.99 USD received"
    )
    row = await notification(admin, user.sub, "push", "payment.succeeded")
    assert row["status"] == "sent"
    assert set(row["delivered_to"]) == {"topic", arns["fcm"], arns["apns"]}


async def test_a_disabled_endpoint_is_marked_and_skipped(
    client, registered, send_event, worker, admin, moto_endpoint, aws
):
    user = await registered()
    created = await client.post(
        "/notifications/devices",
        json={"platform": "fcm", "token": f"gone-{user.sub}"},
        headers=bearer(user.access_token),
    )
    arn = await admin.fetchval(
        "SELECT endpoint_arn FROM notifications.devices WHERE id = $1::uuid", created.json()["id"]
    )
    # The platform rejected the token: SNS switches the endpoint off.
    build_clients(worker.settings).sns.set_endpoint_attributes(
        EndpointArn=arn, Attributes={"Enabled": "false"}
    )
    await send_event(
        "payment.failed",
        {"payment_id": "pay_x", "user_id": user.sub, "amount": 100, "currency": "USD"},
    )
    await worker.run_once()
    row = await notification(admin, user.sub, "push", "payment.failed")
    assert row["status"] == "sent"
    assert list(row["delivered_to"]) == ["topic"]
    device = await admin.fetchrow(
        "SELECT enabled, disabled_reason FROM notifications.devices WHERE endpoint_arn = $1", arn
    )
    assert device["enabled"] is False
    assert "EndpointDisabled" in device["disabled_reason"]
    assert endpoint_messages(moto_endpoint, arn) == []
    listed = await client.get("/notifications/devices", headers=bearer(user.access_token))
    assert listed.json()["data"][0]["enabled"] is False


async def test_provider_outage_is_retried_with_backoff_then_sent(
    send_event, make_worker, worker, admin, moto_endpoint
):
    user_id, email = new_user()
    await send_event("user.registered", {"user_id": user_id, "email": email})
    # SES and SNS unreachable: nothing listens on port 9 (discard).
    down = make_worker(aws_endpoint_url="http://127.0.0.1:9", aws_timeout_seconds=1.0)
    assert await down.run_once() == 2
    row = await notification(admin, user_id, "email")
    assert (row["status"], row["attempts"]) == ("pending", 1)
    assert "EndpointConnectionError" in row["last_error"]
    assert await worker.run_once() == 0  # not due before the backoff delay
    next_attempt = await admin.fetchval(
        "SELECT next_attempt_at - updated_at FROM notifications.notifications WHERE id = $1",
        row["id"],
    )
    assert 0.2 <= next_attempt.total_seconds() <= 0.3

    await admin.execute(
        "UPDATE notifications.notifications SET next_attempt_at = now() WHERE user_id = $1",
        user_id,
    )
    assert await worker.run_once() == 2
    row = await notification(admin, user_id, "email")
    assert (row["status"], row["attempts"], row["last_error"]) == ("sent", 2, None)
    assert len(emails_to(moto_endpoint, email)) == 1


async def test_permanent_ses_errors_fail_at_once_with_the_reason(send_event, make_worker, admin):
    user_id, _ = new_user()
    await send_event("user.registered", {"user_id": user_id, "email": "not an address"})
    unverified = make_worker(ses_sender="nobody@unverified.example")
    await unverified.run_once()
    row = await notification(admin, user_id, "email")
    assert (row["status"], row["attempts"]) == ("failed", 1)
    assert row["last_error"].startswith("MessageRejected")


async def test_retries_stop_after_the_schedule_and_the_row_fails(send_event, make_worker, admin):
    user_id, email = new_user()
    await send_event("user.registered", {"user_id": user_id, "email": email})
    down = make_worker(
        aws_endpoint_url="http://127.0.0.1:9", aws_timeout_seconds=1.0, delivery_retry_schedule=(0,)
    )
    await down.run_once()
    await down.run_once()
    row = await notification(admin, user_id, "email")
    assert (row["status"], row["attempts"]) == ("failed", 2)
    assert row["last_error"].startswith(
        "gave up after 2 attempts; last error: EndpointConnectionError"
    )
