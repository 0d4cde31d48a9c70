"""MicroPay Notifications: the FastAPI application."""

from __future__ import annotations

from micropay_common.app import create_service_app
from micropay_common.idempotency import idempotency_purge_job
from micropay_common.outbox import outbox_relay_job
from notifications_microservice.settings import NotificationsSettings

VERSION = "0.1.0"

app = create_service_app(
    settings_cls=NotificationsSettings,
    schema="notifications",
    title="MicroPay Notifications",
    description="Email (SES), push (SNS) and signed outbound webhooks for every movement of money.",
    version=VERSION,
    tags=[
        {
            "name": "notifications",
            "description": "The caller's notifications, devices and webhook endpoints.",
        },
    ],
    routers=[],
    background_jobs=[outbox_relay_job, idempotency_purge_job],
)
