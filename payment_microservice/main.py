"""MicroPay Payments: the FastAPI application (`uvicorn payment_microservice.main:app`)."""

from __future__ import annotations

from fastapi import FastAPI

from micropay_common.app import create_service_app
from micropay_common.http import ServiceClient
from micropay_common.idempotency import idempotency_purge_job
from micropay_common.outbox import outbox_relay_job
from payment_microservice.payments.driver import PaymentDriver
from payment_microservice.payments.router import router as payments_router
from payment_microservice.reconciliation.router import router as reconciliation_router
from payment_microservice.reconciliation.service import Reconciler, reconcile_job
from payment_microservice.refunds.driver import RefundDriver
from payment_microservice.refunds.router import router as refunds_router
from payment_microservice.settings import PaymentSettings
from payment_microservice.stripe_api import StripeApi, stripe_histogram
from payment_microservice.wallet import WalletClient
from payment_microservice.webhooks.router import router as webhooks_router

VERSION = "0.1.0"


async def start_clients(app: FastAPI) -> None:
    """Stripe, the wallet and the drivers that use them, on app.state."""
    settings: PaymentSettings = app.state.settings
    app.state.stripe = StripeApi.from_settings(settings, app.state.stripe_seconds)
    app.state.wallet = WalletClient(
        ServiceClient(
            settings.service_url("transactions"),
            app.state.service_tokens,
            timeout=settings.http_timeout_seconds,
        )
    )
    app.state.payment_driver = PaymentDriver(app.state.sessionmaker, app.state.stripe, settings)
    app.state.refund_driver = RefundDriver(
        app.state.sessionmaker, app.state.stripe, app.state.wallet, settings
    )
    app.state.reconciler = Reconciler(
        app.state.sessionmaker, app.state.payment_driver, app.state.refund_driver, settings
    )


async def close_clients(app: FastAPI) -> None:
    """Close the HTTP connection pools."""
    await app.state.stripe.aclose()
    await app.state.wallet.aclose()


def create_app(settings: PaymentSettings | None = None) -> FastAPI:
    """The payment service; settings from the environment unless given."""
    app = create_service_app(
        settings_cls=PaymentSettings,
        settings=settings,
        schema="payments",
        title="MicroPay Payments",
        description=(
            "Wallet top-ups by card through Stripe: payments, 3-D Secure, refunds and Stripe "
            "webhooks."
        ),
        version=VERSION,
        tags=[
            {"name": "payments", "description": "Card top-ups and refunds."},
            {"name": "webhooks", "description": "Stripe's signed webhooks."},
        ],
        routers=[payments_router, refunds_router, webhooks_router, reconciliation_router],
        on_startup=[start_clients],
        on_shutdown=[close_clients],
        background_jobs=[outbox_relay_job, idempotency_purge_job, reconcile_job],
    )
    # Registered once per app, not per start: an app may be started more than once (tests).
    app.state.stripe_seconds = stripe_histogram(app.state.metrics_registry)
    return app


app = create_app()
