"""MicroPay Payments: the FastAPI application (`uvicorn payment_microservice.main:app`)."""

from __future__ import annotations

from micropay_common.app import create_service_app
from micropay_common.idempotency import idempotency_purge_job
from micropay_common.outbox import outbox_relay_job
from payment_microservice.settings import PaymentSettings

VERSION = "0.1.0"

app = create_service_app(
    settings_cls=PaymentSettings,
    schema="payments",
    title="MicroPay Payments",
    description=(
        "Wallet top-ups by card through Stripe: payments, 3-D Secure, refunds and Stripe webhooks."
    ),
    version=VERSION,
    tags=[
        {"name": "payments", "description": "Card top-ups and refunds."},
        {"name": "webhooks", "description": "Stripe's signed webhooks."},
    ],
    routers=[],
    background_jobs=[outbox_relay_job, idempotency_purge_job],
)
