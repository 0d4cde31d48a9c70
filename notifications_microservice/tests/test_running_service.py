"""The service as it runs: its own background worker delivers what events bring, over HTTP."""

from __future__ import annotations

from typing import Any

import httpx

from micropay_common.events import Event, PaymentSucceeded, TransferCompleted, UserRegistered
from micropay_testing.apps import serve_http
from micropay_testing.events import event_envelope
from micropay_testing.http import bearer
from micropay_testing.polling import eventually
from notifications_microservice.main import create_app
from notifications_microservice.tests.helpers import (
    Receiver,
    create_webhook,
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


async def test_the_worker_is_woken_by_the_commit_that_made_notifications_due(
    notifications_settings, service_account_headers, moto_endpoint
):
    # Polling once an hour: only the wake-up at commit explains a send after the first pass.
    app = create_app(notifications_settings(delivery_poll_interval_seconds=3600))
    waiting_id, waiting_email = new_user()
    first_id, first_email = new_user()
    async with (
        serve_http(app) as url,
        httpx.AsyncClient(base_url=url, timeout=10) as client,
    ):

        async def deliver(event: Event, producer: str) -> None:
            answer = await client.post(
                "/internal/events",
                json=event_envelope(event),
                headers=service_account_headers[producer],
            )
            assert answer.json() == {"status": "applied"}, answer.text

        # A receipt whose address is not known yet waits for it.
        await deliver(
            PaymentSucceeded(
                payment_id="pay_woken", user_id=waiting_id, amount=500, currency="USD"
            ),
            "payment",
        )
        await deliver(UserRegistered(user_id=first_id, email=first_email), "auth")
        await eventually(lambda: len(emails_to(moto_endpoint, first_email)) == 1, within=10)
        # Sent after the pass that sent the first welcome had claimed its batch.
        await deliver(UserRegistered(user_id=waiting_id, email=waiting_email), "auth")
        await eventually(lambda: len(emails_to(moto_endpoint, waiting_email)) == 2, within=10)


async def test_a_manual_redelivery_wakes_the_worker(
    notifications_settings, make_user, service_account_headers
):
    app = create_app(notifications_settings(delivery_poll_interval_seconds=3600))
    recorder = Receiver()
    user = make_user()
    async with (
        serve_http(recorder.app()) as hooks,
        serve_http(app) as url,
        httpx.AsyncClient(base_url=url, timeout=10) as client,
    ):
        endpoint = await create_webhook(
            client, user, f"{hooks}/hooks/woken", ["payment.succeeded"], recorder
        )
        paid = await client.post(
            "/internal/events",
            json=event_envelope(
                PaymentSucceeded(
                    payment_id="pay_redelivered", user_id=user.sub, amount=700, currency="USD"
                )
            ),
            headers=service_account_headers["payment"],
        )
        assert paid.json() == {"status": "applied"}
        await eventually(lambda: len(recorder.at("/hooks/woken")) == 1, within=10)

        async def logged() -> list[dict[str, Any]]:
            page = await client.get(
                f"/notifications/webhooks/{endpoint['id']}/deliveries",
                headers=bearer(user.access_token),
            )
            return list(page.json()["data"])

        [delivery] = await eventually(logged, within=10)
        again = await client.post(
            f"/notifications/webhooks/{endpoint['id']}/deliveries/{delivery['id']}/redeliver",
            headers=bearer(user.access_token),
        )
        assert again.status_code == 202, again.text
        # The worker is idle until the next hour's poll: only the wake-up sends it again.
        await eventually(lambda: len(recorder.at("/hooks/woken")) == 2, within=10)
