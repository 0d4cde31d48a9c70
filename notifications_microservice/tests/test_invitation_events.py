"""Invitation events: the sender hears each step; the invited address, which has no account, gets
one email and nothing else."""

from __future__ import annotations

import uuid

from notifications_microservice.tests.helpers import new_user


def invitation(sender, to_email: str) -> dict[str, object]:
    return {
        "invitation_id": str(uuid.uuid4()),
        "from_user_id": sender[0],
        "from_email": sender[1],
        "to_email": to_email,
        "amount": 2000,
        "currency": "USD",
        "description": "Welcome <b>gift</b>",
        "expires_at": "2026-12-12T10:00:00Z",
    }


async def test_the_invited_address_gets_one_email_and_the_sender_a_notice(send_event, admin):
    sender = new_user()
    address = f"new-{uuid.uuid4().hex}@example.com"

    response = await send_event("transfer.invited", invitation(sender, address))

    assert response.json() == {"status": "applied"}
    to_address = await admin.fetch(
        "SELECT user_id, channel, subject, body_text, body_html FROM notifications.notifications "
        "WHERE recipient = $1",
        address,
    )
    assert len(to_address) == 1
    mail = to_address[0]
    assert (mail["user_id"], mail["channel"]) == (f"address:{address}", "email")
    assert mail["subject"] == f"{sender[1]} sent you 20.00 USD on MicroPay"
    assert "by 2026-12-12 10:00 UTC" in mail["body_text"]
    assert "because someone sent money to this address" in mail["body_html"]
    assert "you have a MicroPay wallet" not in mail["body_html"]
    assert "Welcome &lt;b&gt;gift&lt;/b&gt;" in mail["body_html"]
    to_sender = await admin.fetch(
        "SELECT channel, recipient, subject FROM notifications.notifications "
        "WHERE user_id = $1 AND event_type = 'transfer.invited' ORDER BY channel",
        sender[0],
    )
    assert [row["channel"] for row in to_sender] == ["email", "push"]
    assert to_sender[0]["subject"] == f"20.00 USD is waiting for {address}"
    assert to_sender[0]["recipient"] == sender[1]


async def test_cancel_and_expiry_tell_the_sender_only(send_event, admin):
    sender = new_user()
    address = f"new-{uuid.uuid4().hex}@example.com"
    await send_event("transfer.invitation_canceled", invitation(sender, address))
    await send_event("transfer.invitation_expired", invitation(sender, address))

    subjects = [
        row["subject"]
        for row in await admin.fetch(
            "SELECT subject FROM notifications.notifications WHERE user_id = $1 "
            "AND channel = 'email' ORDER BY event_type",
            sender[0],
        )
    ]
    assert subjects == [
        f"You cancelled the 20.00 USD waiting for {address}; it is back in your wallet",
        f"{address} did not sign up in time; the 20.00 USD is back in your wallet",
    ]
    assert not await admin.fetchval(
        "SELECT count(*) FROM notifications.notifications WHERE recipient = $1", address
    )
