"""MicroPay Notifications: the FastAPI application."""

from __future__ import annotations

from collections.abc import Sequence

from fastapi import FastAPI

from micropay_common.app import BackgroundJob, create_service_app
from micropay_common.idempotency import idempotency_purge_job
from micropay_common.outbox import outbox_relay_job
from notifications_microservice.aws import attach_clients
from notifications_microservice.delivery.worker import delivery_worker_job
from notifications_microservice.devices.platforms import PushPlatforms
from notifications_microservice.devices.router import router as devices_router
from notifications_microservice.notifications.handlers import build_events_router
from notifications_microservice.notifications.router import router as notifications_router
from notifications_microservice.settings import NotificationsSettings
from notifications_microservice.webhooks.router import router as webhooks_router

VERSION = "0.1.0"


async def attach_push_platforms(app: FastAPI) -> None:
    """Start-up hook: the SNS platform applications, looked up on first use."""
    app.state.push_platforms = PushPlatforms(app.state.aws.sns, app.state.settings)


ON_STARTUP = [attach_clients, attach_push_platforms]
BACKGROUND_JOBS = [outbox_relay_job, idempotency_purge_job, delivery_worker_job]


def create_app(
    settings: NotificationsSettings | None = None,
    *,
    background_jobs: Sequence[BackgroundJob] = BACKGROUND_JOBS,
) -> FastAPI:
    """The notifications app; settings from the environment unless given."""
    return create_service_app(
        settings_cls=NotificationsSettings,
        settings=settings,
        schema="notifications",
        title="MicroPay Notifications",
        description=(
            "Email (SES), push (SNS) and signed outbound webhooks for every movement of money."
        ),
        version=VERSION,
        tags=[
            {
                "name": "notifications",
                "description": "The caller's notifications, devices and webhook endpoints.",
            },
        ],
        routers=[notifications_router, devices_router, webhooks_router, build_events_router()],
        on_startup=ON_STARTUP,
        background_jobs=background_jobs,
    )


app = create_app()
