"""Fixtures of the notifications tests: the service app in-process, its delivery worker driven
by the tests, a webhook receiver under uvicorn, moto for SES and SNS, and a real PostgreSQL."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from micropay_testing.apps import serve, serve_http
from micropay_testing.cognito import CognitoUser
from micropay_testing.database import TestDatabase
from micropay_testing.events import event_envelope
from notifications_microservice.aws import AwsClients, build_clients
from notifications_microservice.delivery.worker import DeliveryWorker
from notifications_microservice.main import create_app
from notifications_microservice.settings import NotificationsSettings
from notifications_microservice.state import NotificationsState
from notifications_microservice.tests.helpers import AwsEdge, Receiver
from stack.bootstrap import AwsResources
from stack.postgres import connect

FAST_RETRIES = (0.2, 0.2, 0.2)
TABLES = (
    "webhook_attempts",
    "webhook_redeliveries",
    "notification_preferences",
    "notifications",
    "devices",
    "webhook_endpoints",
    "users",
)

SettingsFactory = Callable[..., NotificationsSettings]


@pytest.fixture(scope="session")
def notifications_settings(service_settings, aws: AwsResources) -> SettingsFactory:
    """Settings of the service on moto, with fast retries; overrides as keywords."""

    def factory(**overrides: Any) -> NotificationsSettings:
        values: dict[str, Any] = {
            "ses_sender": aws.ses_sender,
            "sns_topic_arn": aws.sns_topic_arn,
            "webhook_secrets_kms_key_id": aws.webhook_secrets_kms_key_id,
            "webhooks_allow_private_urls": True,
            "webhook_timeout_seconds": 1.0,
            "aws_timeout_seconds": 2.0,
            "delivery_lease_seconds": 10.0,
            # moto answers GetSendQuota with SES's sandbox rate (1/s).
            "ses_max_send_rate": 1000.0,
            "webhook_retry_schedule": FAST_RETRIES,
            "delivery_retry_schedule": FAST_RETRIES,
        }
        values.update(overrides)
        return service_settings(  # type: ignore[no-any-return]
            "notifications", settings_cls=NotificationsSettings, **values
        )

    return factory


@pytest.fixture(scope="session")
async def served(notifications_settings: SettingsFactory) -> AsyncIterator[tuple[FastAPI, Any]]:
    """The notifications app in-process, without its background jobs (tests run the worker)."""
    app = create_app(notifications_settings(), background_jobs=())
    async with serve(app) as client:
        yield app, client


@pytest.fixture
def app(served) -> FastAPI:
    """The app under test."""
    return served[0]  # type: ignore[no-any-return]


@pytest.fixture
def client(served) -> httpx.AsyncClient:
    """An HTTP client wired to the app."""
    return served[1]  # type: ignore[no-any-return]


@pytest.fixture(scope="session")
async def admin(database: TestDatabase) -> AsyncIterator[Any]:
    """A superuser connection to the test database."""
    conn = await connect(database.admin_url)
    await conn.set_type_codec("jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")
    yield conn
    await conn.close()


@pytest.fixture(autouse=True)
async def clean_tables(admin) -> AsyncIterator[None]:
    """Each test starts from empty notifications tables, so a worker sees only its rows."""
    # DELETE, not TRUNCATE: on tables this small it is many times faster.
    wipe = ";".join(f"DELETE FROM notifications.{table}" for table in TABLES)
    await admin.execute(wipe)
    yield
    await admin.execute(wipe)


@pytest.fixture
async def make_worker(app: FastAPI) -> AsyncIterator[Callable[..., DeliveryWorker]]:
    """Delivery workers on the app's database; settings overrides as keywords."""
    workers: list[DeliveryWorker] = []

    def factory(aws: AwsClients | None = None, **overrides: Any) -> DeliveryWorker:
        state = NotificationsState.of(app)
        settings = state.settings.model_copy(update=overrides)
        clients = aws or (build_clients(settings) if overrides else state.aws)
        worker = DeliveryWorker(state.sessionmaker, settings, clients, state.webhook_secrets)
        workers.append(worker)
        return worker

    yield factory
    for worker in workers:
        await worker.aclose()


@pytest.fixture
def worker(make_worker) -> DeliveryWorker:
    """A delivery worker with the app's settings."""
    return make_worker()  # type: ignore[no-any-return]


SendEvent = Callable[..., Awaitable[httpx.Response]]


@pytest.fixture
def send_event(client: httpx.AsyncClient, producer_headers) -> SendEvent:
    """Post an event to /internal/events as its producer's relay would; returns the response."""

    async def send(event_type: str, data: dict[str, Any], **kwargs: Any) -> httpx.Response:
        body = kwargs.pop("body", None) or event_envelope(event_type, data, **kwargs)
        headers = producer_headers(body["type"])
        return await client.post("/internal/events", json=body, headers=headers)

    return send


@pytest.fixture
async def registered(make_user, send_event) -> Callable[..., Awaitable[CognitoUser]]:
    """A pool user whose `user.registered` event the service has applied."""

    async def factory() -> CognitoUser:
        user = make_user()
        response = await send_event(
            "user.registered", {"user_id": user.sub, "email": user.username}
        )
        assert response.json() == {"status": "applied"}
        return user  # type: ignore[no-any-return]

    return factory


@pytest.fixture
async def aws_edge(moto_endpoint: str) -> AsyncIterator[tuple[AwsEdge, str]]:
    """The AWS stand-in in front of moto for answers moto cannot give; yields it and its URL."""
    edge = AwsEdge(moto_endpoint)
    async with serve_http(edge.app()) as url:
        yield edge, url


@pytest.fixture
async def receiver() -> AsyncIterator[tuple[Receiver, str]]:
    """A webhook receiver under uvicorn; yields it and its base URL."""
    recorder = Receiver()
    async with serve_http(recorder.app()) as url:
        yield recorder, url
