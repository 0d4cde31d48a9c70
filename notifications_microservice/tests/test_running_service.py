"""The service as it runs: its own background worker delivers what events bring, over HTTP."""

from __future__ import annotations

import httpx

from micropay_common.events import TransferCompleted, UserRegistered
from micropay_testing.apps import serve_http
from micropay_testing.events import event_envelope
from micropay_testing.http import bearer
from micropay_testing.polling import eventually
from notifications_microservice.main import create_app
from notifications_microservice.tests.helpers import (
    Receiver,
    emails_to,
    new_user,
)


async def test_events_reach_email_and_a_signed_webhook_through_the_background_worker(
    notifications_settings, make_user, service_account_headers, moto_endpoint
):
    app = create_app(notifications_settings(delivery_poll_interval_seconds=0.05))
    recorder = Receiver()
    user = make_user()
    friend_id, friend_email = new_user()
    async with (
        serve_http(recorder.app()) as hooks,
        serve_http(app) as url,
        httpx.AsyncClient(base_url=url, timeout=10) as client,
    ):
        registered = await client.post(
            "/internal/events",
            json=event_envelope(UserRegistered(user_id=user.sub, email=user.username)),
            headers=service_account_headers["auth"],
        )
        assert registered.json() == {"status": "applied"}
        created = await client.post(
            "/notifications/webhooks",
            json={"url": f"{hooks}/hooks/e2e", "events": ["transfer.completed"]},
            headers=bearer(user.access_token),
        )
        recorder.secrets["/hooks/e2e"] = created.json()["secret"]
        transfer = await client.post(
            "/internal/events",
            json=event_envelope(
                TransferCompleted(
                    transfer_id="tr_e2e",
                    from_user_id=user.sub,
                    from_email=user.username,
                    to_user_id=friend_id,
                    to_email=friend_email,
                    amount=1999,
                    currency="USD",
                    description="concert tickets",
                )
            ),
            headers=service_account_headers["transactions"],
        )
        assert transfer.json() == {"status": "applied"}

        [request] = await eventually(lambda: recorder.at("/hooks/e2e"))
        await eventually(lambda: len(emails_to(moto_endpoint, friend_email)) == 1)
        await eventually(lambda: len(emails_to(moto_endpoint, user.username)) == 2)

        async def all_sent() -> bool:
            page = (await client.get("/notifications", headers=bearer(user.access_token))).json()
            return {n["status"] for n in page["data"]} == {"sent"} and len(page["data"]) == 5

        await eventually(all_sent)
    assert request.error is None
    assert request.verified["data"]["direction"] == "sent"
    assert request.verified["data"]["counterparty_email"] == friend_email
    [received] = emails_to(moto_endpoint, friend_email)
    assert received["subject"] == f"You received 19.99 USD from {user.username}"
    assert "Note: concert tickets" in received["body"]
