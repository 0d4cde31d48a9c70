"""MicroPay Notifications: the FastAPI application."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from fastapi import FastAPI

from micropay_common.app import BackgroundJob, create_service_app
from micropay_common.idempotency import idempotency_purge_job
from micropay_common.outbox import outbox_relay_job
from notifications_microservice.aws import build_clients
from notifications_microservice.delivery.backlog import BacklogGauges
from notifications_microservice.delivery.worker import backlog_metrics_job, delivery_worker_job
from notifications_microservice.devices.platforms import PushPlatforms
from notifications_microservice.devices.router import router as devices_router
from notifications_microservice.models import SCHEMA
from notifications_microservice.notifications.handlers import build_events_router
from notifications_microservice.notifications.router import router as notifications_router
from notifications_microservice.preferences.router import router as preferences_router
from notifications_microservice.settings import NotificationsSettings
from notifications_microservice.state import NotificationsState
from notifications_microservice.webhooks.jobs import legacy_secret_sealing_job
from notifications_microservice.webhooks.router import router as webhooks_router
from notifications_microservice.webhooks.secrets import build_secrets

VERSION = "0.1.0"


async def start_clients(state: NotificationsState) -> None:
    """Start-up hook: the AWS clients, the push platforms (looked up on first use), secrets,
    and the backlog gauges (in the app's registry, so /metrics shows them)."""
    state.backlog = BacklogGauges.register(state.metrics_registry)
    # Creating a boto3 client reads files, so off the event loop.
    state.aws = await asyncio.to_thread(build_clients, state.settings)
    for client in (state.aws.ses, state.aws.sns, state.aws.kms):
        state.aws_calls.watch(client)
    state.push_platforms = PushPlatforms(state.aws.sns, state.settings)
    state.webhook_secrets = build_secrets(
        state.aws.kms,
        state.settings.webhook_secrets_kms_key_id,
        ttl_seconds=state.settings.webhook_secrets_key_cache_seconds,
        max_size=state.settings.webhook_secrets_key_cache_size,
    )


async def close_clients(state: NotificationsState) -> None:
    """Shut-down hook: the gauges leave the registry, so the app can start again."""
    state.backlog.unregister(state.metrics_registry)


BACKGROUND_JOBS = [
    outbox_relay_job,
    idempotency_purge_job,
    delivery_worker_job,
    backlog_metrics_job,
    legacy_secret_sealing_job,
]


def create_app(
    settings: NotificationsSettings | None = None,
    *,
    background_jobs: Sequence[BackgroundJob] = BACKGROUND_JOBS,
) -> FastAPI:
    """The notifications app; settings from the environment unless given."""
    return create_service_app(
        settings_cls=NotificationsSettings,
        settings=settings,
        state_cls=NotificationsState,
        schema=SCHEMA,
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
        routers=[
            notifications_router,
            preferences_router,
            devices_router,
            webhooks_router,
            build_events_router(),
        ],
        on_startup=[start_clients],
        on_shutdown=[close_clients],
        background_jobs=background_jobs,
    )


app = create_app()
