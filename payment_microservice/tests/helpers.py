"""Helpers of the payment tests: the stack under test and polling."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import asyncpg
import httpx
import stripe

from micropay_testing.cognito import CognitoUser
from micropay_testing.http import bearer
from payment_microservice.settings import PaymentSettings

STRIPE_KEY = "sk_test_local"


@dataclass
class PaymentStack:
    """The payment service with its wallet, and what the tests need to observe them."""

    url: str
    client: httpx.AsyncClient
    transactions_url: str
    localstripe_url: str
    paypal_url: str
    paypal_webhook_id: str
    webhook_secret: str
    settings_for: Callable[..., PaymentSettings]

    def headers(self, user: CognitoUser, key: str | None = None) -> dict[str, str]:
        """Bearer token and, when given, an Idempotency-Key."""
        headers = bearer(user.access_token)
        if key is not None:
            headers["Idempotency-Key"] = key
        return headers

    async def pay(
        self,
        user: CognitoUser,
        amount: int = 1000,
        currency: str = "USD",
        payment_method: str = "pm_card_visa",
        key: str | None = None,
        **extra: Any,
    ) -> httpx.Response:
        """POST /payments with a fresh Idempotency-Key unless one is given."""
        body = {"amount": amount, "currency": currency, "payment_method": payment_method, **extra}
        return await self.client.post(
            "/payments", json=body, headers=self.headers(user, key or str(uuid.uuid4()))
        )

    async def refund(
        self, user: CognitoUser, payment_id: str, key: str | None = None, **body: Any
    ) -> httpx.Response:
        """POST /payments/{id}/refunds with a fresh Idempotency-Key unless one is given."""
        return await self.client.post(
            f"/payments/{payment_id}/refunds",
            json=body,
            headers=self.headers(user, key or str(uuid.uuid4())),
        )

    async def balance(self, user: CognitoUser, currency: str = "USD") -> int:
        """The user's available wallet balance, from the transactions service."""
        async with httpx.AsyncClient(base_url=self.transactions_url) as client:
            response = await client.get("/transactions/balance", headers=bearer(user.access_token))
        assert response.status_code == 200, response.text
        for wallet in response.json()["balances"]:
            if wallet["currency"] == currency:
                return int(wallet["available"])
        return 0

    async def wallet(self, user: CognitoUser, currency: str = "USD") -> dict[str, int]:
        """The user's wallet as `GET /transactions/balance` shows it (available, owed, ...)."""
        async with httpx.AsyncClient(base_url=self.transactions_url) as client:
            response = await client.get("/transactions/balance", headers=bearer(user.access_token))
        assert response.status_code == 200, response.text
        for wallet in response.json()["balances"]:
            if wallet["currency"] == currency:
                return {key: value for key, value in wallet.items() if key != "currency"}
        return {"available": 0, "balance": 0, "held": 0, "pending": 0, "owed": 0}

    async def open_dispute(self, **fields: str) -> dict[str, Any]:
        """A card holder's dispute of a charge (the localstripe wrapper's `/_micropay/disputes`)."""
        return await self.stripe_post("/_micropay/disputes", **fields)

    async def stripe_update(self, path: str, **fields: str) -> dict[str, Any]:
        """Change an object in localstripe (`POST /v1/<path>`), as Stripe's own side would."""
        return await self.stripe_post(f"/v1/{path}", **fields)

    async def stripe_post(self, path: str, **fields: str) -> dict[str, Any]:
        """POST a form to localstripe; its JSON answer (200 expected)."""
        async with httpx.AsyncClient(base_url=self.localstripe_url) as client:
            response = await client.post(
                path, data=fields, headers={"Authorization": f"Bearer {STRIPE_KEY}"}
            )
        assert response.status_code == 200, response.text
        found: dict[str, Any] = response.json()
        return found

    def sign(self, payload: bytes, timestamp: int | None = None, secret: str | None = None) -> str:
        """A Stripe-Signature header, computed as Stripe documents it."""
        return stripe.WebhookSignature.generate_signature_header(  # type: ignore[no-any-return]
            payload.decode(), secret or self.webhook_secret, timestamp=timestamp
        )

    async def send_event(
        self, event_type: str, obj: dict[str, Any], event_id: str | None = None
    ) -> httpx.Response:
        """Deliver a signed Stripe event of our own making to the webhook endpoint."""
        event = {
            "id": event_id or f"evt_test_{uuid.uuid4().hex}",
            "object": "event",
            "type": event_type,
            "created": int(time.time()),
            "data": {"object": obj},
        }
        payload = json.dumps(event).encode()
        return await self.client.post(
            "/payments/webhooks/stripe",
            content=payload,
            headers={"Stripe-Signature": self.sign(payload), "Content-Type": "application/json"},
        )


async def outbox_events(db: asyncpg.Connection, event_type: str, subject: str) -> list[Any]:
    """The payment service's outbox rows of one event type about a payment or refund."""
    key = "refund_id" if event_type.startswith("payment.refund") else "payment_id"
    rows = await db.fetch(
        "SELECT event_id, consumer, payload FROM payments.outbox "
        f"WHERE event_type = $1 AND payload->'data'->>'{key}' = $2",
        event_type,
        subject,
    )
    return [{**dict(row), "payload": json.loads(row["payload"])} for row in rows]
