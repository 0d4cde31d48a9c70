"""Fixtures of the payment tests: the payment and transactions apps over real HTTP, localstripe.

Everything is real: PostgreSQL, moto's Cognito (tokens), a localstripe process that signs and
sends webhooks, and the transactions service (the wallet) as its own app on its own port.
"""

from __future__ import annotations

import base64
import secrets
from collections.abc import AsyncIterator, Callable
from typing import Any

import asyncpg
import httpx
import pytest
import stripe

from micropay_testing.apps import serve_http
from micropay_testing.database import TestDatabase
from micropay_testing.processes import free_port
from payment_microservice.main import create_app
from payment_microservice.settings import PaymentSettings
from payment_microservice.tests.helpers import STRIPE_KEY, PaymentStack
from stack.bootstrap import register_paypal_webhook, register_stripe_webhook
from stack.paypal_server import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET
from stack.postgres import connect
from transactions_microservice.main import create_app as create_transactions_app
from transactions_microservice.settings import TransactionsSettings


@pytest.fixture(scope="session")
def stripe_client(localstripe_url: str) -> stripe.StripeClient:
    """stripe-python on localstripe, for what a customer's browser would do (cards, 3-D Secure)."""
    return stripe.StripeClient(STRIPE_KEY, base_addresses={"api": localstripe_url})


@pytest.fixture(scope="session")
def card(stripe_client: stripe.StripeClient) -> Callable[[str], str]:
    """A card PaymentMethod with a test card number; returns its id."""

    def create(number: str) -> str:
        method = stripe_client.v1.payment_methods.create(
            {
                "type": "card",
                "card": {"number": number, "exp_month": 12, "exp_year": 2030, "cvc": "123"},
            }
        )
        return str(method.id)

    return create


@pytest.fixture(scope="session")
def closed_port_url() -> str:
    """A URL nothing listens on (the notifications service, or Stripe being down)."""
    return f"http://127.0.0.1:{free_port()}"


@pytest.fixture(scope="package")
async def transactions_url(service_settings, closed_port_url) -> AsyncIterator[str]:
    """The transactions service (the wallet) under uvicorn on a free port."""
    settings = service_settings(
        "transactions",
        settings_cls=TransactionsSettings,
        notifications_url=closed_port_url,
        outbox_poll_interval_seconds=0.1,
    )
    async with serve_http(create_transactions_app(settings)) as url:
        yield url


@pytest.fixture(scope="package")
async def payment_stack(
    service_settings, localstripe_url, paypal_url, transactions_url, closed_port_url
) -> AsyncIterator[PaymentStack]:
    """The payment service under uvicorn, registered as localstripe's and the PayPal
    stand-in's webhook endpoint."""
    secret = "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()
    port = free_port()
    paypal_webhook_id = register_paypal_webhook(
        paypal_url,
        DEFAULT_CLIENT_ID,
        DEFAULT_CLIENT_SECRET,
        f"http://127.0.0.1:{port}/payments/webhooks/paypal",
    )

    def settings_for(**overrides: Any) -> PaymentSettings:
        values: dict[str, Any] = {
            "stripe_api_key": STRIPE_KEY,
            "stripe_api_base": localstripe_url,
            "stripe_webhook_secret": secret,
            "stripe_max_network_retries": 1,
            "stripe_timeout_seconds": 5.0,
            "paypal_client_id": DEFAULT_CLIENT_ID,
            "paypal_client_secret": DEFAULT_CLIENT_SECRET,
            "paypal_webhook_id": paypal_webhook_id,
            "paypal_api_base": paypal_url,
            "paypal_max_network_retries": 1,
            "paypal_timeout_seconds": 5.0,
            "transactions_url": transactions_url,
            "notifications_url": closed_port_url,
            "payment_url": f"http://127.0.0.1:{port}",
            "outbox_poll_interval_seconds": 0.1,
            # Tests reconcile through POST /internal/reconcile, not on a timer.
            "reconcile_interval_seconds": 3600.0,
        }
        values.update(overrides)
        return service_settings("payment", settings_cls=PaymentSettings, **values)  # type: ignore[no-any-return]

    async with serve_http(create_app(settings_for()), port=port) as url:
        register_stripe_webhook(localstripe_url, f"{url}/payments/webhooks/stripe", secret)
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:
            yield PaymentStack(
                url=url,
                client=client,
                transactions_url=transactions_url,
                localstripe_url=localstripe_url,
                paypal_url=paypal_url,
                paypal_webhook_id=paypal_webhook_id,
                webhook_secret=secret,
                settings_for=settings_for,
            )


@pytest.fixture(scope="session")
async def db(database: TestDatabase) -> AsyncIterator[asyncpg.Connection]:
    """A superuser connection to look at what the services wrote."""
    conn = await connect(database.admin_url)
    yield conn
    await conn.close()


@pytest.fixture(scope="session")
def service_headers(service_account_headers: dict[str, dict[str, str]]) -> dict[str, str]:
    """The payment service's own account (what reconciliation accepts)."""
    return service_account_headers["payment"]
