"""The user journey of docs/design.md, end to end through the gateway.

Two users register and log in; one tops up by card (declined card, 3-D Secure too), sends money
to the other, refunds part of a top-up; both read their histories and notifications (email read
back from the SES stand-in, signed webhooks verified with standardwebhooks); strangers see 404
for each other's records; logout revokes. A third tops up through PayPal Checkout, approving on
the PayPal stand-in's page as a buyer would, and refunds part of it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from micropay_testing.apps import serve_http
from micropay_testing.paypal import buyer_chooses, query
from micropay_testing.polling import eventually
from tests.e2e.client import (
    DECLINED_AT_CHARGE,
    NEEDS_3DS,
    PROBLEM_JSON,
    Api,
    User,
    WebhookReceiver,
)

pytestmark = pytest.mark.timeout(180)


@dataclass
class Journey:
    """What the steps made, for the checks of the later tests of this module."""

    ana: User
    bob: User
    receiver: WebhookReceiver
    receiver_url: str
    endpoints: dict[str, dict[str, Any]] = field(default_factory=dict)
    payments: dict[str, dict[str, Any]] = field(default_factory=dict)
    transfer: dict[str, Any] = field(default_factory=dict)
    refund: dict[str, Any] = field(default_factory=dict)


@pytest.fixture(scope="module")
async def journey(api: Api) -> AsyncIterator[Journey]:
    """Two fresh users and a webhook receiver of theirs, running for the module."""
    receiver = WebhookReceiver()
    # On this machine for `make run`'s stack; on the docker bridge for the compose stack.
    async with serve_http(
        receiver.app(), host=api.receiver_listen_host, url_host=api.receiver_url_host
    ) as url:
        ana = await api.register("ana")
        bob = await api.register("bob")
        yield Journey(ana=ana, bob=bob, receiver=receiver, receiver_url=url)


async def _subscribe(api: Api, journey: Journey, user: User, name: str, events: list[str]) -> None:
    response = await api.client.post(
        "/notifications/webhooks",
        json={"url": f"{journey.receiver_url}/{name}", "events": events},
        headers=user.auth,
    )
    assert response.status_code == 201, response.text
    endpoint = response.json()
    assert endpoint["secret"].startswith("whsec_")
    journey.receiver.secrets[f"/{name}"] = endpoint["secret"]
    journey.endpoints[name] = endpoint


async def test_money_moves_through_the_gateway(api: Api, journey: Journey) -> None:
    ana, bob = journey.ana, journey.bob
    me = await api.client.get("/auth/me", headers=ana.auth)
    assert me.status_code == 200
    assert me.json()["email"] == ana.email
    assert me.json()["user_id"] == ana.user_id
    await _subscribe(api, journey, ana, "ana", ["payment.succeeded", "payment.refunded"])
    await _subscribe(api, journey, bob, "bob", ["transfer.completed"])
    # The wallets open on registration (user.registered), empty.
    await api.balance_becomes(ana, 0)
    await api.balance_becomes(bob, 0)

    # A top-up by card: succeeded at once, credited a moment later (payment.succeeded).
    key = "journey-top-up-1"
    paid = await api.top_up(ana, 5000, key=key)
    assert paid.status_code == 201, paid.text
    payment = paid.json()
    assert payment["status"] == "succeeded"
    assert (payment["amount"], payment["currency"], payment["amount_refunded"]) == (5000, "USD", 0)
    journey.payments["card"] = payment
    await api.balance_becomes(ana, 5000)
    # The same key and body again: the stored answer, no second charge and no second credit.
    again = await api.top_up(ana, 5000, key=key)
    assert again.status_code == 201
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json()["id"] == payment["id"]
    conflict = await api.top_up(ana, 5001, key=key)
    assert conflict.status_code == 409
    assert conflict.json()["type"] == "idempotency_conflict"

    # A declined card: 402 problem, a failed payment, nothing credited.
    declined = await api.top_up(ana, 1500, await api.card(DECLINED_AT_CHARGE))
    assert declined.status_code == 402
    assert declined.headers["content-type"] == PROBLEM_JSON
    assert declined.json()["type"] == "card_declined"
    failed_id = declined.json()["payment_id"]
    failed = await api.client.get(f"/payments/{failed_id}", headers=ana.auth)
    assert failed.json()["status"] == "failed"
    journey.payments["declined"] = failed.json()

    # 3-D Secure: requires_action until the customer authenticates, then credited.
    secure = await api.top_up(ana, 2000, await api.card(NEEDS_3DS))
    assert secure.status_code == 201, secure.text
    pending = secure.json()
    assert pending["status"] == "requires_action"
    assert pending["next_action"]["type"] == "use_stripe_sdk"
    assert await api.balance(ana) == 5000
    await api.authenticate_3ds(pending["client_secret"])

    async def settled() -> bool:
        read = await api.client.get(f"/payments/{pending['id']}", headers=ana.auth)
        return bool(read.json()["status"] == "succeeded")

    await eventually(settled)
    journey.payments["3ds"] = pending
    await api.balance_becomes(ana, 7000)
    assert await api.balance(ana) == 7000

    # A transfer to Bob, by email.
    sent = await api.transfer(ana, bob.email.upper(), 2500, description="Dinner <b>split</b>")
    assert sent.status_code == 201, sent.text
    transfer = sent.json()
    assert transfer["to_email"] == bob.email.lower()
    assert "to_user_id" not in transfer  # no answer carries another user's id
    assert bob.user_id not in sent.text
    journey.transfer = transfer
    assert await api.balance(ana) == 4500
    await api.balance_becomes(bob, 2500)
    too_much = await api.transfer(bob, ana.email, 2501)
    assert too_much.status_code == 409
    assert too_much.json()["type"] == "insufficient_funds"
    # Funds are weighed before the recipient: an unknown email is refused the same way.
    to_nobody = await api.transfer(bob, "nobody-at-all@example.com", 2501)
    assert to_nobody.status_code == 409
    assert {**to_nobody.json(), "request_id": None} == {**too_much.json(), "request_id": None}
    to_self = await api.transfer(bob, bob.email, 1)
    assert to_self.status_code == 400

    # A partial refund of the first top-up: the card gets 1000 back, the wallet pays it.
    refunded = await api.refund(ana, payment["id"], 1000)
    assert refunded.status_code == 201, refunded.text
    refund = refunded.json()
    assert (refund["payment_id"], refund["amount"], refund["status"]) == (
        payment["id"],
        1000,
        "succeeded",
    )
    journey.refund = refund
    await api.balance_becomes(ana, 3500)
    read = await api.client.get(f"/payments/{payment['id']}", headers=ana.auth)
    assert read.json()["amount_refunded"] == 1000
    # The rest of that payment (4000) is more than the wallet holds (3500): refused, nothing
    # refunded at the card.
    uncovered = await api.refund(ana, payment["id"])
    assert uncovered.status_code == 409
    assert uncovered.json()["type"] == "insufficient_funds"
    read = await api.client.get(f"/payments/{payment['id']}", headers=ana.auth)
    assert read.json()["amount_refunded"] == 1000
    assert await api.balance(ana) == 3500

    # Both histories, newest first, each line with the balance it left.
    ana_lines = await api.history(ana)
    assert [(line["type"], line["amount"], line["balance_after"]) for line in ana_lines] == [
        ("refund", -1000, 3500),
        ("transfer_out", -2500, 4500),
        ("top_up", 2000, 7000),
        ("top_up", 5000, 5000),
    ]
    assert ana_lines[1]["reference"] == transfer["id"]
    assert ana_lines[1]["counterparty_email"] == bob.email
    assert {ana_lines[2]["reference"], ana_lines[3]["reference"]} == {
        pending["id"],
        payment["id"],
    }
    bob_lines = await api.history(bob)
    assert [(line["type"], line["amount"], line["balance_after"]) for line in bob_lines] == [
        ("transfer_in", 2500, 2500)
    ]
    assert bob_lines[0]["counterparty_email"] == ana.email
    assert bob_lines[0]["reference"] == transfer["id"]
    one = await api.client.get(f"/transactions/{bob_lines[0]['id']}", headers=bob.auth)
    assert one.status_code == 200
    assert one.json() == bob_lines[0]
    payments = await api.client.get("/payments", headers=ana.auth)
    assert [p["id"] for p in payments.json()["data"]] == [pending["id"], failed_id, payment["id"]]
    check = await api.ledger_check()
    assert check["ok"], check["violations"]


def _events(notifications: list[dict[str, Any]], channel: str) -> list[str]:
    return sorted(n["event"] for n in notifications if n["channel"] == channel)


async def test_each_event_notifies_once_by_email_push_and_signed_webhook(
    api: Api, journey: Journey
) -> None:
    ana, bob = journey.ana, journey.bob
    assert journey.transfer, "the money test of this module did not get that far"
    ana_expected = sorted(
        [
            "user.registered",
            "payment.succeeded",
            "payment.succeeded",
            "payment.failed",
            "transfer.completed",
            "payment.refunded",
        ]
    )
    bob_expected = ["transfer.completed", "user.registered"]

    async def all_sent() -> bool:
        for user, expected in ((ana, ana_expected), (bob, bob_expected)):
            sent = await api.notifications(user, status="sent")
            if _events(sent, "email") != expected or _events(sent, "push") != expected:
                return False
        return True

    await eventually(all_sent, within=30)
    for user, expected in ((ana, ana_expected), (bob, bob_expected)):
        every = await api.notifications(user)
        assert _events(every, "email") == expected
        assert _events(every, "push") == expected
        # SES (moto) got exactly those emails for the user, with the same subjects.
        mails = await api.emails_to(user.email)
        subjects = sorted(n["subject"] for n in every if n["channel"] == "email")
        assert sorted(mail["subject"] for mail in mails) == subjects

    bob_mail = await api.emails_to(bob.email)
    received = [m for m in bob_mail if ana.email in m["subject"]]
    assert len(received) == 1
    assert "25.00 USD" in received[0]["subject"]
    # The transfer's note is escaped in the HTML body, never markup.
    assert "Dinner &lt;b&gt;split&lt;/b&gt;" in received[0]["body"]

    # Webhooks: each subscribed event once, signed with the endpoint's secret.
    async def webhooks_in() -> bool:
        ana_events = sorted(d.payload["type"] for d in journey.receiver.at("/ana") if d.payload)
        bob_events = [d.payload["type"] for d in journey.receiver.at("/bob") if d.payload]
        return ana_events == [
            "payment.refunded",
            "payment.succeeded",
            "payment.succeeded",
        ] and bob_events == ["transfer.completed"]

    await eventually(webhooks_in, within=30)
    assert all(d.error is None for d in journey.receiver.deliveries), [
        d.error for d in journey.receiver.deliveries
    ]
    (delivery,) = journey.receiver.at("/bob")
    assert delivery.payload is not None
    data = delivery.payload["data"]
    assert data["transfer_id"] == journey.transfer["id"]
    assert (data["amount"], data["currency"]) == (2500, "USD")
    ids = [d.headers["webhook-id"] for d in journey.receiver.deliveries]
    assert len(ids) == len(set(ids))
    log = await api.client.get(
        f"/notifications/webhooks/{journey.endpoints['bob']['id']}/deliveries", headers=bob.auth
    )
    assert log.status_code == 200
    attempts = log.json()["data"]
    assert [(a["event"], a["succeeded"], a["status_code"]) for a in attempts] == [
        ("transfer.completed", True, 200)
    ]


async def test_strangers_get_404_and_logout_revokes(api: Api, journey: Journey) -> None:
    ana, bob = journey.ana, journey.bob
    assert journey.refund, "the money test of this module did not get that far"
    payment_id = journey.payments["card"]["id"]
    ana_line = (await api.history(ana))[0]
    for path in (
        f"/payments/{payment_id}",
        f"/payments/{payment_id}/refunds",
        f"/transactions/{ana_line['id']}",
        f"/notifications/webhooks/{journey.endpoints['ana']['id']}",
        f"/notifications/webhooks/{journey.endpoints['ana']['id']}/deliveries",
    ):
        response = await api.client.get(path, headers=bob.auth)
        assert response.status_code == 404, (path, response.text)
        assert response.headers["content-type"] == PROBLEM_JSON
    stolen_refund = await api.refund(bob, payment_id, 100)
    assert stolen_refund.status_code == 404
    mine = await api.client.get(f"/payments/{payment_id}", headers=ana.auth)
    assert mine.json()["amount_refunded"] == 1000

    own_ports = {
        api.stack.service_urls[service] + path
        for service, path in (
            ("transactions", "/transactions/balance"),
            ("payment", "/payments"),
            ("notifications", "/notifications"),
            ("auth", "/auth/me"),
        )
    }
    async with httpx.AsyncClient(trust_env=False, timeout=10) as direct:
        for url in own_ports:
            assert (await direct.get(url, headers=ana.auth)).status_code == 200, url
        logout = await api.client.post("/auth/logout", headers=ana.auth)
        assert logout.status_code == 204
        for path in ("/transactions/balance", "/payments", "/notifications", "/auth/me"):
            response = await api.client.get(path, headers=ana.auth)
            assert response.status_code == 401, (path, response.status_code)
            assert response.headers["content-type"] == PROBLEM_JSON
        # Each service on its own port, past the gateway, within the one second.
        deadline = time.monotonic() + 1.0
        for url in own_ports:
            while (response := await direct.get(url, headers=ana.auth)).status_code == 200:
                assert time.monotonic() < deadline, f"{url} still accepts a logged-out token"
                await asyncio.sleep(0.01)
            assert response.status_code == 401, (url, response.text)
            assert response.json()["type"] == "token_revoked", (url, response.text)
    refreshed = await api.client.post("/auth/refresh", json={"refresh_token": ana.refresh_token})
    assert refreshed.status_code == 401
    # Bob is unaffected, and Ana can sign in again.
    assert (await api.client.get("/transactions/balance", headers=bob.auth)).status_code == 200
    again = await api.login(ana.email, ana.user_id)
    assert await api.balance(again) == 3500


async def test_paypal_top_up_through_the_gateway(api: Api) -> None:
    cleo = await api.register("cleo")
    back_url = "https://wallet.micropay.example/top-up/paypal"
    started = await api.paypal_top_up(cleo, 3000, f"{back_url}/return", f"{back_url}/cancel")
    paypal_url = getattr(api.stack, "paypal_url", None)
    if paypal_url is None:
        # The compose stack runs no PayPal stand-in and is given no PayPal app (.env.example).
        assert started.status_code == 422, started.text
        assert started.json()["type"] == "provider_not_offered"
        return
    assert started.status_code == 201, started.text
    payment = started.json()
    assert (payment["provider"], payment["status"]) == ("paypal", "requires_action")
    approve_url = payment["next_action"]["redirect_to_url"]["url"]
    assert approve_url.startswith(f"{paypal_url}/checkoutnow?token=")

    # The buyer approves on PayPal's page and is sent back to the app with the order id.
    back = await buyer_chooses(approve_url, "approve")
    assert str(back).startswith(f"{back_url}/return?")
    assert query(back)["token"] == approve_url.rsplit("=", 1)[-1]
    confirmed = await api.client.post(f"/payments/{payment['id']}/confirm", headers=cleo.auth)
    assert confirmed.status_code == 200, confirmed.text
    assert confirmed.json()["status"] == "succeeded"
    await api.balance_becomes(cleo, 3000)

    # PayPal's own webhooks (approval, capture) reach the service too and credit nothing more.
    again = await api.client.post(f"/payments/{payment['id']}/confirm", headers=cleo.auth)
    assert again.json()["status"] == "succeeded"
    refunded = await api.refund(cleo, payment["id"], 1200)
    assert refunded.status_code == 201, refunded.text
    assert refunded.json()["status"] == "succeeded"
    await api.balance_becomes(cleo, 1800)
    lines = await api.history(cleo)
    assert [(line["type"], line["amount"], line["balance_after"]) for line in lines] == [
        ("refund", -1200, 1800),
        ("top_up", 3000, 3000),
    ]

    # A second buyer changes their mind at PayPal: the top-up is canceled, nothing moves.
    second = (await api.paypal_top_up(cleo, 500, f"{back_url}/return", f"{back_url}/cancel")).json()
    back = await buyer_chooses(second["next_action"]["redirect_to_url"]["url"], "cancel")
    assert str(back).startswith(f"{back_url}/cancel?")
    canceled = await api.client.post(f"/payments/{second['id']}/cancel", headers=cleo.auth)
    assert canceled.json()["status"] == "canceled"
    assert await api.balance(cleo) == 1800
