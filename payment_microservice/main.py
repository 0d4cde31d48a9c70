"""MicroPay Payments: the FastAPI application (`uvicorn payment_microservice.main:app`)."""

from __future__ import annotations

from fastapi import FastAPI

from micropay_common.app import create_service_app
from micropay_common.http import ServiceClient
from micropay_common.idempotency import idempotency_purge_job
from micropay_common.outbox import outbox_relay_job
from payment_microservice.models import SCHEMA
from payment_microservice.payments.driver import PaymentDriver
from payment_microservice.payments.router import internal_router as payments_internal_router
from payment_microservice.payments.router import router as payments_router
from payment_microservice.paypal_api import PayPalApi
from payment_microservice.reconciliation.jobs import reconcile_job
from payment_microservice.reconciliation.router import router as reconciliation_router
from payment_microservice.reconciliation.service import Reconciler
from payment_microservice.refunds.driver import RefundDriver
from payment_microservice.refunds.router import router as refunds_router
from payment_microservice.settings import PaymentSettings
from payment_microservice.state import PaymentState
from payment_microservice.stripe_api import StripeApi, stripe_histogram
from payment_microservice.wallet import WalletClient
from payment_microservice.webhooks.router import router as webhooks_router

VERSION = "0.1.0"


async def start_clients(state: PaymentState) -> None:
    """Start-up hook: Stripe, PayPal, the wallet and the drivers that use them."""
    settings = state.settings
    # In the app's registry, so /metrics shows it; removed again when the app stops.
    state.stripe_seconds = stripe_histogram(state.metrics_registry)
    state.stripe = StripeApi.from_settings(settings, state.stripe_seconds)
    state.paypal = PayPalApi(settings)
    state.wallet = WalletClient(
        ServiceClient(
            settings.service_url("transactions"),
            state.service_tokens,
            timeout=settings.http_timeout_seconds,
        )
    )
    state.payment_driver = PaymentDriver(state.sessionmaker, state.stripe, settings, state.paypal)
    state.refund_driver = RefundDriver(
        state.sessionmaker, state.stripe, state.wallet, settings, state.paypal
    )
    state.reconciler = Reconciler(
        state.sessionmaker, state.payment_driver, state.refund_driver, settings
    )


async def close_clients(state: PaymentState) -> None:
    """Shut-down hook: close the HTTP connection pools."""
    await state.stripe.aclose()
    await state.paypal.aclose()
    await state.wallet.aclose()
    state.metrics_registry.unregister(state.stripe_seconds)


def create_app(settings: PaymentSettings | None = None) -> FastAPI:
    """The payment service; settings from the environment unless given."""
    return create_service_app(
        settings_cls=PaymentSettings,
        settings=settings,
        state_cls=PaymentState,
        schema=SCHEMA,
        title="MicroPay Payments",
        description=(
            "Wallet top-ups by card through Stripe and through PayPal Checkout: payments, "
            "3-D Secure, PayPal approval and capture, refunds, and both providers' webhooks."
        ),
        version=VERSION,
        tags=[
            {"name": "payments", "description": "Card and PayPal top-ups, and refunds."},
            {"name": "webhooks", "description": "Stripe's and PayPal's signed webhooks."},
        ],
        routers=[
            payments_router,
            refunds_router,
            webhooks_router,
            payments_internal_router,
            reconciliation_router,
        ],
        on_startup=[start_clients],
        on_shutdown=[close_clients],
        background_jobs=[outbox_relay_job, idempotency_purge_job, reconcile_job],
    )


app = create_app()
