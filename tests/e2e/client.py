"""What the e2e tests do as a client: calls through the gateway, cards, polling, read-backs."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Protocol

import boto3
import httpx
import stripe
from standardwebhooks import Webhook, WebhookVerificationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from micropay_testing.http import every_item
from micropay_testing.polling import eventually
from stack.bootstrap import AwsResources, admin_log_in
from stack.launcher import STRIPE_TEST_KEY

PASSWORD = "Journey-pass-1"
# Test cards of the Stripe stand-in (docs/design.md).
DECLINED_AT_CHARGE = "4000000000000341"
NEEDS_3DS = "4000002760003184"
PROBLEM_JSON = "application/problem+json"


@dataclass
class User:
    """A registered, logged-in user."""

    email: str
    user_id: str
    access_token: str
    refresh_token: str

    @property
    def auth(self) -> dict[str, str]:
        """The Authorization header."""
        return {"Authorization": f"Bearer {self.access_token}"}


class StackView(Protocol):
    """What the journey reads of a stack: `make run`'s (stack.launcher.Stack) or the docker
    compose one (tests/containers/compose.py)."""

    aws: AwsResources | None
    gateway_url: str | None
    webhook_secret: str

    @property
    def service_urls(self) -> dict[str, str]: ...

    @property
    def moto_url(self) -> str: ...

    @property
    def localstripe_url(self) -> str: ...


@dataclass
class Api:
    """The gateway as a client sees it, plus the stand-ins a browser or an operator would use."""

    client: httpx.AsyncClient
    stack: StackView
    # Where a user's webhook receiver in the test listens, and the host name the notifications
    # service is given for it.
    receiver_listen_host: str = "127.0.0.1"
    receiver_url_host: str = "127.0.0.1"

    # --- accounts ----------------------------------------------------------------------------
    async def register(self, prefix: str = "user") -> User:
        """Register a new user through the gateway and log in."""
        email = f"{prefix}-{uuid.uuid4().hex[:10]}@example.com"
        registered = await self.sign_up(email)
        assert registered.status_code == 201, registered.text
        return await self.login(email, registered.json()["user_id"])

    async def sign_up(self, email: str) -> httpx.Response:
        """POST /auth/register through the gateway; the answer.

        The gateway admits 30 sign-ups a minute from one address (burst 10), and the suite signs
        many people up from 127.0.0.1: a 429 is waited out, as a client would.
        """
        deadline = time.monotonic() + 90
        while True:
            response = await self.client.post(
                "/auth/register", json={"email": email, "password": PASSWORD}
            )
            if response.status_code != 429 or time.monotonic() > deadline:
                return response
            await asyncio.sleep(float(response.headers.get("Retry-After", "2")))

    async def login(self, email: str, user_id: str) -> User:
        """Log in through the gateway."""
        response = await self.client.post(
            "/auth/login", json={"email": email, "password": PASSWORD}
        )
        assert response.status_code == 200, response.text
        tokens = response.json()
        return User(email, user_id, tokens["access_token"], tokens["refresh_token"])

    # --- money -------------------------------------------------------------------------------
    async def top_up(
        self,
        user: User,
        amount: int,
        payment_method: str = "pm_card_visa",
        *,
        key: str | None = None,
        currency: str = "USD",
    ) -> httpx.Response:
        """POST /payments (a fresh Idempotency-Key unless one is given)."""
        return await self.client.post(
            "/payments",
            json={"amount": amount, "currency": currency, "payment_method": payment_method},
            headers={**user.auth, "Idempotency-Key": key or str(uuid.uuid4())},
        )

    async def paypal_top_up(
        self, user: User, amount: int, return_url: str, cancel_url: str, *, key: str | None = None
    ) -> httpx.Response:
        """POST /payments through PayPal Checkout (a fresh Idempotency-Key unless one is given)."""
        return await self.client.post(
            "/payments",
            json={
                "amount": amount,
                "currency": "USD",
                "provider": "paypal",
                "return_url": return_url,
                "cancel_url": cancel_url,
            },
            headers={**user.auth, "Idempotency-Key": key or str(uuid.uuid4())},
        )

    async def transfer(
        self,
        sender: User,
        recipient_email: str,
        amount: int,
        *,
        key: str | None = None,
        description: str | None = None,
    ) -> httpx.Response:
        """POST /transactions/transfers (a fresh Idempotency-Key unless one is given)."""
        body: dict[str, Any] = {"to_email": recipient_email, "amount": amount, "currency": "USD"}
        if description is not None:
            body["description"] = description
        return await self.client.post(
            "/transactions/transfers",
            json=body,
            headers={**sender.auth, "Idempotency-Key": key or str(uuid.uuid4())},
        )

    async def refund(
        self, user: User, payment_id: str, amount: int | None = None, *, key: str | None = None
    ) -> httpx.Response:
        """POST /payments/{id}/refunds."""
        body = {} if amount is None else {"amount": amount}
        return await self.client.post(
            f"/payments/{payment_id}/refunds",
            json=body,
            headers={**user.auth, "Idempotency-Key": key or str(uuid.uuid4())},
        )

    async def balance(self, user: User, currency: str = "USD") -> int | None:
        """The available balance in `currency`; None when there is no such wallet (yet) or it
        cannot be read now."""
        response = await self.client.get("/transactions/balance", headers=user.auth)
        if response.status_code != 200:
            return None
        for wallet in response.json()["balances"]:
            if wallet["currency"] == currency:
                return int(wallet["available"])
        return None

    async def balance_becomes(self, user: User, expected: int, within: float = 20.0) -> None:
        """Wait until the available balance is `expected` (events arrive a moment later)."""

        async def reached() -> bool:
            return await self.balance(user) == expected

        await eventually(reached, within=within)

    async def history(self, user: User, **query: Any) -> list[dict[str, Any]]:
        """Every ledger entry of the user, newest first, following the cursor."""
        return await every_item(self.client, "/transactions", user.auth, **query)

    async def notifications(self, user: User, **query: Any) -> list[dict[str, Any]]:
        """Every notification of the user, newest first."""
        return await every_item(self.client, "/notifications", user.auth, **query)

    # --- what a browser does with Stripe.js --------------------------------------------------
    def stripe(self) -> stripe.StripeClient:
        """stripe-python on the Stripe stand-in."""
        return stripe.StripeClient(
            STRIPE_TEST_KEY, base_addresses={"api": self.stack.localstripe_url}
        )

    async def card(self, number: str) -> str:
        """A card PaymentMethod with a test card number; its id."""

        def create() -> str:
            method = self.stripe().v1.payment_methods.create(
                {
                    "type": "card",
                    "card": {"number": number, "exp_month": 12, "exp_year": 2030, "cvc": "123"},
                }
            )
            return str(method.id)

        return await asyncio.to_thread(create)

    async def authenticate_3ds(self, client_secret: str, *, success: bool = True) -> None:
        """Complete (or fail) 3-D Secure as Stripe.js does in the customer's browser."""
        intent_id = client_secret.split("_secret_")[0]
        async with httpx.AsyncClient(trust_env=False, timeout=10) as browser:
            done = await browser.post(
                f"{self.stack.localstripe_url}/v1/payment_intents/{intent_id}/_authenticate",
                data={
                    "client_secret": client_secret,
                    "success": "true" if success else "false",
                    "key": "pk_test_local",
                },
            )
        assert done.status_code == 200, done.text

    # --- read-backs from the stand-ins -------------------------------------------------------
    async def emails_to(self, address: str) -> list[dict[str, Any]]:
        """Emails SES (moto) accepted for `address`."""
        async with httpx.AsyncClient(trust_env=False, timeout=10) as client:
            data = (await client.get(f"{self.stack.moto_url}/moto-api/data.json")).json()
        return [
            message
            for message in data["ses"]["Message"]
            if address in message["destinations"].get("ToAddresses", [])
        ]

    async def service_token(self, service: str = "payment") -> str:
        """An access token of a service account (for the internal ledger check)."""
        aws = self.stack.aws
        assert aws is not None
        account = aws.service_accounts[service]

        def login() -> str:
            result = admin_log_in(self.cognito(), aws, account["username"], account["password"])
            return str(result["AccessToken"])

        return await asyncio.to_thread(login)

    def cognito(self) -> Any:
        """A boto3 cognito-idp client on the stack's moto."""
        assert self.stack.aws is not None
        return boto3.client(
            "cognito-idp",
            region_name=self.stack.aws.region,
            endpoint_url=self.stack.moto_url,
            aws_access_key_id="test",
            aws_secret_access_key="test",
        )

    async def ledger_check(self) -> dict[str, Any]:
        """The transactions service's own invariant check (an operator's view, not a client's)."""
        token = await self.service_token()
        async with httpx.AsyncClient(trust_env=False, timeout=30) as client:
            response = await client.get(
                f"{self.stack.service_urls['transactions']}/internal/ledger/check",
                headers={"Authorization": f"Bearer {token}"},
            )
        assert response.status_code == 200, response.text
        result: dict[str, Any] = response.json()
        return result


# --- a user's webhook receiver -----------------------------------------------------------------


@dataclass
class Delivery:
    """One webhook request the receiver got, with the outcome of its signature check."""

    path: str
    headers: dict[str, str]
    body: bytes
    payload: dict[str, Any] | None
    error: str | None


@dataclass
class WebhookReceiver:
    """A user's HTTP endpoint: verifies each delivery with standardwebhooks and records it."""

    secrets: dict[str, str] = field(default_factory=dict)
    deliveries: list[Delivery] = field(default_factory=list)

    def at(self, path: str) -> list[Delivery]:
        """Deliveries received at `path`."""
        return [d for d in self.deliveries if d.path == path]

    async def handle(self, request: Request) -> Response:
        body = await request.body()
        headers = dict(request.headers.items())
        payload: dict[str, Any] | None = None
        error = None
        secret = self.secrets.get(request.url.path)
        if secret is None:
            error = "no secret for this path"
        else:
            try:
                payload = Webhook(secret).verify(body, headers)
            except WebhookVerificationError as exc:
                error = str(exc)
        self.deliveries.append(Delivery(request.url.path, headers, body, payload, error))
        return Response(json.dumps({"ok": True}), media_type="application/json")

    def app(self) -> Starlette:
        """The receiver as an ASGI app (any path, POST)."""
        return Starlette(routes=[Route("/{path:path}", self.handle, methods=["POST"])])
