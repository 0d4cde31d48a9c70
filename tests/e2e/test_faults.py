"""Faults injected into the running stack, and what must hold afterwards.

Each test puts back what it stopped, and the autouse check of conftest.py makes sure every
service is ready again before the next test runs.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import stripe

from micropay_testing.apps import serve_http
from micropay_testing.polling import eventually
from stack.launcher import STRIPE_TEST_KEY, Stack
from tests.e2e.client import NEEDS_3DS, PROBLEM_JSON, Api, User, WebhookReceiver
from tests.e2e.conftest import StackLog

pytestmark = pytest.mark.timeout(180)


@pytest.fixture
async def receiver() -> AsyncIterator[tuple[WebhookReceiver, str]]:
    """A webhook receiver of the test's users, and its base URL."""
    receiver = WebhookReceiver()
    async with serve_http(receiver.app()) as url:
        yield receiver, url


async def _funded(api: Api, amount: int, prefix: str) -> User:
    user = await api.register(prefix)
    paid = await api.top_up(user, amount)
    assert paid.status_code == 201, paid.text
    await api.balance_becomes(user, amount)
    return user


async def _subscribe(
    api: Api, user: User, receiver: WebhookReceiver, url: str, events: list[str]
) -> str:
    path = f"/{uuid.uuid4().hex}"
    response = await api.client.post(
        "/notifications/webhooks", json={"url": f"{url}{path}", "events": events}, headers=user.auth
    )
    assert response.status_code == 201, response.text
    receiver.secrets[path] = response.json()["secret"]
    return path


async def test_credits_land_exactly_once_after_the_transactions_service_was_down(
    api: Api, stack: Stack
) -> None:
    stack.stop_service("transactions")
    try:
        # Registered while its wallet cannot be opened: user.registered waits in the outbox too.
        user = await api.register("offline-wallet")
        amounts = [1000, 2000, 3000, 4000]
        keys = [str(uuid.uuid4()) for _ in amounts]
        payments = []
        for amount, key in zip(amounts, keys, strict=True):
            paid = await api.top_up(user, amount, key=key)
            assert paid.status_code == 201, paid.text
            assert paid.json()["status"] == "succeeded"
            payments.append(paid.json())
        # A client retry of one of them: the stored answer, no second payment.
        again = await api.top_up(user, amounts[1], key=keys[1])
        assert again.headers["Idempotent-Replayed"] == "true"
        assert again.json()["id"] == payments[1]["id"]
        unavailable = await api.client.get("/transactions/balance", headers=user.auth)
        assert unavailable.status_code == 503
        assert unavailable.headers["content-type"] == PROBLEM_JSON
        # Let the relays fail a few times (localstripe's webhooks arrive meanwhile too).
        await asyncio.sleep(3)
    finally:
        stack.start_service("transactions")

    await api.balance_becomes(user, sum(amounts), within=30)
    # Retries still in flight after the first success must not add anything.
    await asyncio.sleep(3)
    assert await api.balance(user) == sum(amounts)
    lines = await api.history(user)
    assert sorted(line["reference"] for line in lines) == sorted(p["id"] for p in payments)
    assert sorted(line["amount"] for line in lines) == amounts
    assert {line["type"] for line in lines} == {"top_up"}
    check = await api.ledger_check()
    assert check["ok"], check["violations"]


async def test_notifications_are_delivered_once_after_the_notifications_service_was_down(
    api: Api, stack: Stack, receiver: tuple[WebhookReceiver, str]
) -> None:
    hook, url = receiver
    sender = await _funded(api, 5000, "offline-sender")
    recipient = await api.register("offline-recipient")
    await api.balance_becomes(recipient, 0)
    sender_path = await _subscribe(api, sender, hook, url, ["transfer.completed"])
    recipient_path = await _subscribe(api, recipient, hook, url, ["transfer.completed"])

    stack.stop_service("notifications")
    try:
        amounts = [500, 700, 900]
        transfers = []
        for amount in amounts:
            sent = await api.transfer(sender, recipient.email, amount)
            assert sent.status_code == 201, sent.text
            transfers.append(sent.json())
        unavailable = await api.client.get("/notifications", headers=sender.auth)
        assert unavailable.status_code == 503
        await asyncio.sleep(3)
        assert hook.deliveries == []
    finally:
        stack.start_service("notifications")

    async def delivered() -> bool:
        for user in (sender, recipient):
            sent = await api.notifications(user, status="sent")
            transfer_mails = [
                n for n in sent if n["event"] == "transfer.completed" and n["channel"] == "email"
            ]
            if len(transfer_mails) < len(amounts):
                return False
        return len(hook.deliveries) >= 2 * len(amounts)

    await eventually(delivered, within=40)
    await asyncio.sleep(3)  # anything delivered twice would show up by now
    transfer_ids = sorted(t["id"] for t in transfers)
    for path in (sender_path, recipient_path):
        payloads = [d.payload for d in hook.at(path)]
        assert all(payload is not None for payload in payloads), [d.error for d in hook.at(path)]
        assert sorted(p["data"]["transfer_id"] for p in payloads if p) == transfer_ids
    for user in (sender, recipient):
        every = await api.notifications(user)
        per_channel = Counter(n["channel"] for n in every if n["event"] == "transfer.completed")
        assert per_channel == {"email": 3, "push": 3, "webhook": 3}
        assert all(n["status"] == "sent" for n in every if n["event"] == "transfer.completed")
    mails = await api.emails_to(recipient.email)
    received = sorted(m["subject"] for m in mails if sender.email in m["subject"])
    expected = [f"You received {a // 100}.{a % 100:02d} USD from {sender.email}" for a in amounts]
    assert received == sorted(expected)


async def test_postgres_restart_under_load_is_503_then_recovers_with_nothing_half_applied(
    api: Api, stack: Stack
) -> None:
    # Enough for every transfer the three senders can make, however fast the stack is.
    start_balance, amount = 1_000_000, 1
    sender = await _funded(api, start_balance, "pg-sender")
    recipient = await api.register("pg-recipient")
    await api.balance_becomes(recipient, 0)
    statuses: Counter[str] = Counter()
    done: dict[str, str] = {}  # Idempotency-Key -> transfer id
    stop = asyncio.Event()
    restarted_at: list[float] = []

    async def transfer_until_answered(key: str) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                response = await api.transfer(sender, recipient.email, amount, key=key)
            except httpx.TransportError as exc:
                statuses[type(exc).__name__] += 1
            else:
                statuses[str(response.status_code)] += 1
                if response.status_code == 201:
                    done[key] = response.json()["id"]
                    return
                assert response.status_code in (502, 503, 504), response.text
                assert response.headers["content-type"] == PROBLEM_JSON
            # A client retries with the same key until it has an answer.
            await asyncio.sleep(0.2)
        pytest.fail(f"no answer for transfer {key} within 60 s")

    async def sender_loop() -> None:
        while not stop.is_set():
            await transfer_until_answered(str(uuid.uuid4()))

    async def reader_loop() -> None:
        while not stop.is_set():
            response = await api.client.get("/transactions/balance", headers=recipient.auth)
            statuses[f"read {response.status_code}"] += 1
            assert response.status_code in (200, 502, 503, 504), response.text
            await asyncio.sleep(0.1)

    workers = [asyncio.create_task(sender_loop()) for _ in range(3)]
    reader = asyncio.create_task(reader_loop())
    try:
        await asyncio.sleep(1.0)
        await asyncio.to_thread(stack.stop_postgres)
        try:
            await asyncio.sleep(2.5)
            assert statuses["503"] + statuses["read 503"] > 0, statuses
        finally:
            await asyncio.to_thread(stack.start_postgres)
            restarted_at.append(time.monotonic())
        before = len(done)

        async def recovered() -> bool:
            return len(done) > before + 3

        await eventually(recovered, within=30)
    finally:
        stop.set()
        await asyncio.gather(*workers, reader)

    assert "500" not in statuses, statuses
    assert "read 500" not in statuses, statuses
    count = len(done)
    assert count > 3
    transfer_ids = sorted(done.values())
    assert len(set(transfer_ids)) == count
    await api.balance_becomes(sender, start_balance - amount * count)
    await api.balance_becomes(recipient, amount * count)
    sender_lines = await api.history(sender, type="transfer_out")
    recipient_lines = await api.history(recipient, type="transfer_in")
    assert sorted(line["reference"] for line in sender_lines) == transfer_ids
    assert sorted(line["reference"] for line in recipient_lines) == transfer_ids
    check = await api.ledger_check()
    assert check["ok"], check["violations"]

    # Events written in those transactions were not lost either: one notice per transfer, each
    # sent in the end (one whose outcome could not be recorded goes again after its lease).
    async def notified() -> list[str]:
        # A service is back only once its own reads work again: until then (the notifications
        # service re-reading its deny-list after the restart, say) it answers 503, as it should.
        probe = await api.client.get("/notifications", headers=recipient.auth)
        if probe.status_code == 503:
            return []
        every = await api.notifications(recipient, channel="email")
        notices = [n["status"] for n in every if n["event"] == "transfer.completed"]
        return notices if notices == ["sent"] * count else []

    await eventually(notified, within=60)


def _signed(stack: Stack, event: dict[str, Any]) -> tuple[bytes, dict[str, str]]:
    payload = json.dumps(event).encode()
    signature = stripe.WebhookSignature.generate_signature_header(
        payload.decode(), stack.webhook_secret
    )
    return payload, {"Stripe-Signature": signature, "Content-Type": "application/json"}


def _event(event_id: str, kind: str, obj: dict[str, Any], created: int) -> dict[str, Any]:
    return {
        "id": event_id,
        "object": "event",
        "type": kind,
        "created": created,
        "data": {"object": obj},
    }


async def _deliver(api: Api, stack: Stack, events: list[dict[str, Any]]) -> list[str]:
    outcomes = []
    for event in events:
        body, headers = _signed(stack, event)
        response = await api.client.post("/payments/webhooks/stripe", content=body, headers=headers)
        assert response.status_code == 200, response.text
        outcomes.append(response.json()["outcome"])
    return outcomes


async def test_stripe_webhooks_delivered_five_times_out_of_order_have_one_effect(
    api: Api, stack: Stack
) -> None:
    user = await api.register("webhooks")
    created = await api.top_up(user, 3000, await api.card(NEEDS_3DS))
    assert created.status_code == 201, created.text
    payment = created.json()
    assert payment["status"] == "requires_action"
    intent_id = payment["client_secret"].split("_secret_")[0]
    client = api.stripe()
    waiting = (await asyncio.to_thread(client.v1.payment_intents.retrieve, intent_id)).to_dict()
    await api.authenticate_3ds(payment["client_secret"])
    succeeded = (await asyncio.to_thread(client.v1.payment_intents.retrieve, intent_id)).to_dict()
    assert (waiting["status"], succeeded["status"]) == ("requires_action", "succeeded")

    # The success five times, and the older requires_action event after it (out of order).
    now = int(time.time())
    ok = _event(f"evt_{uuid.uuid4().hex}", "payment_intent.succeeded", succeeded, now)
    stale = _event(f"evt_{uuid.uuid4().hex}", "payment_intent.requires_action", waiting, now - 5)
    outcomes = await _deliver(api, stack, [ok, stale, ok, ok, stale, ok, ok])
    assert outcomes[2:4] == ["duplicate", "duplicate"]
    assert outcomes[4:] == ["duplicate", "duplicate", "duplicate"]
    read = await api.client.get(f"/payments/{payment['id']}", headers=user.auth)
    assert read.json()["status"] == "succeeded"
    await api.balance_becomes(user, 3000)

    # A refund made at Stripe directly (the dashboard): its three events, five deliveries,
    # newest first.
    refund = (
        await asyncio.to_thread(
            client.v1.refunds.create, {"payment_intent": intent_id, "amount": 1200}
        )
    ).to_dict()
    latest = succeeded["latest_charge"]
    charge_id = latest if isinstance(latest, str) else latest["id"]
    charge = (await asyncio.to_thread(client.v1.charges.retrieve, charge_id)).to_dict()
    refund_created = _event(f"evt_{uuid.uuid4().hex}", "refund.created", refund, now + 1)
    charge_refunded = _event(f"evt_{uuid.uuid4().hex}", "charge.refunded", charge, now + 2)
    refund_updated = _event(f"evt_{uuid.uuid4().hex}", "refund.updated", refund, now + 3)
    outcomes = await _deliver(
        api,
        stack,
        [refund_updated, charge_refunded, refund_created, refund_updated, charge_refunded],
    )
    assert outcomes[0] == "applied"
    assert outcomes[1:] == ["ignored", "ignored", "duplicate", "duplicate"]

    await api.balance_becomes(user, 1800)
    await asyncio.sleep(2)  # a second debit or credit would have arrived by now
    assert await api.balance(user) == 1800
    lines = await api.history(user)
    assert [(line["type"], line["amount"]) for line in lines] == [
        ("refund", -1200),
        ("top_up", 3000),
    ]
    read = await api.client.get(f"/payments/{payment['id']}", headers=user.auth)
    assert read.json()["amount_refunded"] == 1200

    async def notices() -> list[str] | None:
        sent = await api.notifications(user, channel="email", status="sent")
        events = sorted(n["event"] for n in sent)
        return events if "payment.refunded" in events else None

    assert await eventually(notices) == ["payment.refunded", "payment.succeeded", "user.registered"]


async def test_calls_keep_working_when_the_service_tokens_expire_and_cannot_be_refreshed(
    api: Api, stack: Stack, stack_log: StackLog
) -> None:
    assert stack.aws is not None
    cognito = api.cognito()
    mark = stack_log.mark()
    # Every service account is signed out: its refresh token is dead. Each service holds its
    # token for three seconds here (SERVICE_TOKEN_REFRESH_MARGIN_SECONDS), so past that every
    # service must get a new one while traffic flows.
    for account in stack.aws.service_accounts.values():
        await asyncio.to_thread(
            cognito.admin_user_global_sign_out,
            UserPoolId=stack.aws.user_pool_id,
            Username=account["username"],
        )
    await asyncio.sleep(3.5)

    payer = await _funded(api, 4000, "token-payer")  # auth -> transactions, payment -> both
    friend = await api.register("token-friend")
    await api.balance_becomes(friend, 0)  # auth -> transactions: the wallet opened
    refunds = await api.client.get("/payments", headers=payer.auth)
    payment_id = refunds.json()["data"][0]["id"]
    refunded = await api.refund(payer, payment_id, 1000)  # payment -> transactions' holds
    assert refunded.status_code == 201, refunded.text
    sent = await api.transfer(payer, friend.email, 500)  # transactions -> notifications
    assert sent.status_code == 201, sent.text
    await api.balance_becomes(payer, 2500)
    await api.balance_becomes(friend, 500)

    async def friend_notified() -> bool:
        found = await api.notifications(friend, channel="email", status="sent")
        return {n["event"] for n in found} == {"user.registered", "transfer.completed"}

    await eventually(friend_notified, within=30)
    for service in ("auth", "payment", "transactions"):
        lines = stack_log.since(mark, service)
        assert any("service token refresh failed; logging in again" in line for line in lines), (
            f"{service} never renewed its token after the sign-out"
        )


async def test_a_refund_stripe_fails_after_success_is_credited_back_once(
    api: Api, stack: Stack
) -> None:
    user = await _funded(api, 2000, "refund-fails")
    payment_id = (await api.client.get("/payments", headers=user.auth)).json()["data"][0]["id"]
    refunded = await api.refund(user, payment_id, 800)
    assert refunded.status_code == 201, refunded.text
    refund = refunded.json()
    assert refund["status"] == "succeeded"
    await api.balance_becomes(user, 1200)

    # The card's bank returns the money days later: Stripe marks the refund failed and sends
    # a signed refund.updated (the stand-in does both when the refund is changed).
    client = api.stripe()
    listed = await asyncio.to_thread(client.v1.refunds.list, {"limit": 100})
    [stripe_refund] = [
        r for r in listed.data if r.to_dict()["metadata"].get("refund_id") == refund["id"]
    ]
    async with httpx.AsyncClient(base_url=stack.localstripe_url) as stripe_side:
        failed = await stripe_side.post(
            f"/v1/refunds/{stripe_refund.id}",
            data={"status": "failed", "failure_reason": "expired_or_canceled_card"},
            headers={"Authorization": f"Bearer {STRIPE_TEST_KEY}"},
        )
    assert failed.status_code == 200, failed.text

    await api.balance_becomes(user, 2000)
    await asyncio.sleep(2)  # a second credit would have arrived by now
    assert await api.balance(user) == 2000
    lines = await api.history(user)
    assert [(line["type"], line["amount"]) for line in lines] == [
        ("refund_reversal", 800),
        ("refund", -800),
        ("top_up", 2000),
    ]
    read = await api.client.get(f"/payments/{payment_id}/refunds", headers=user.auth)
    assert [(r["status"], r["failure_code"]) for r in read.json()["data"]] == [
        ("failed", "expired_or_canceled_card")
    ]
    payment = await api.client.get(f"/payments/{payment_id}", headers=user.auth)
    assert payment.json()["amount_refunded"] == 0

    async def told() -> bool:
        sent = await api.notifications(user, channel="email", status="sent")
        return "payment.refund_failed" in {n["event"] for n in sent}

    await eventually(told)


async def test_a_disputed_top_up_is_taken_back_what_the_wallet_lacks_is_owed_and_a_win_returns_it(
    api: Api, stack: Stack
) -> None:
    payer = await _funded(api, 2000, "disputed")
    friend = await api.register("accomplice")
    await api.balance_becomes(friend, 0)  # the ledger has heard of the friend
    sent = await api.transfer(payer, friend.email, 1500)
    assert sent.status_code == 201, sent.text
    await api.balance_becomes(payer, 500)
    payment_id = (await api.client.get("/payments", headers=payer.auth)).json()["data"][0]["id"]

    # The card holder's bank disputes the top-up: Stripe opens a dispute and withdraws the
    # amount (the stand-in's wrapper does both on the real charge, with signed events).
    client = api.stripe()
    intents = await asyncio.to_thread(client.v1.payment_intents.list, {"limit": 100})
    [intent] = [i for i in intents.data if i.to_dict()["metadata"].get("payment_id") == payment_id]
    stripe_headers = {"Authorization": f"Bearer {STRIPE_TEST_KEY}"}
    async with httpx.AsyncClient(base_url=stack.localstripe_url) as stripe_side:
        opened = await stripe_side.post(
            "/_micropay/disputes", data={"payment_intent": intent.id}, headers=stripe_headers
        )
    assert opened.status_code == 200, opened.text
    dispute = opened.json()

    async def owes(amount: int) -> bool:
        wallets = (await api.client.get("/transactions/balance", headers=payer.auth)).json()
        [usd] = [w for w in wallets["balances"] if w["currency"] == "USD"]
        return bool(usd["owed"] == amount)

    await eventually(lambda: owes(1500))
    assert await api.balance(payer) == 0
    refused = await api.transfer(payer, friend.email, 1)
    assert refused.status_code == 409, refused.text
    assert refused.headers["content-type"] == PROBLEM_JSON
    assert refused.json()["type"] == "wallet_has_debt"
    assert refused.json()["owed"] == 1500
    read = (await api.client.get(f"/payments/{payment_id}", headers=payer.auth)).json()
    assert read["dispute"]["status"] == "open"
    assert read["dispute"]["amount"] == 2000

    # The platform wins the dispute: the debt is cancelled, the rest is the wallet's again.
    async with httpx.AsyncClient(base_url=stack.localstripe_url) as stripe_side:
        won = await stripe_side.post(
            f"/v1/disputes/{dispute['id']}",
            data={"evidence[uncategorized_text]": "winning_evidence"},
            headers=stripe_headers,
        )
    assert won.status_code == 200, won.text
    await eventually(lambda: owes(0))
    await api.balance_becomes(payer, 500)
    await asyncio.sleep(2)  # a second reinstatement would have arrived by now
    assert await api.balance(payer) == 500
    lines = await api.history(payer)
    assert sorted((line["type"], line["amount"]) for line in lines) == sorted(
        [
            ("top_up", 2000),
            ("transfer_out", -1500),
            ("dispute_withdrawal", -500),
            ("dispute_reinstatement", 2000),
            ("debt_settlement", -1500),
        ]
    )
    read = (await api.client.get(f"/payments/{payment_id}", headers=payer.auth)).json()
    assert read["dispute"]["status"] == "won"
    assert read["dispute"]["funds"] == "reinstated"
    check = await api.ledger_check()
    assert check["ok"] is True, check["violations"]

    async def told() -> bool:
        sent = await api.notifications(payer, channel="email", status="sent")
        events = {n["event"] for n in sent}
        return {"payment.dispute_funds_withdrawn", "payment.dispute_funds_reinstated"} <= events

    await eventually(told)
