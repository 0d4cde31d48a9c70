"""Service apps built by the production factory, served in-process or under uvicorn."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager
from fastapi import APIRouter, FastAPI

from micropay_common.app import BackgroundJob, create_service_app
from micropay_common.settings import ServiceSettings
from micropay_common.state import ServiceState
from micropay_testing.processes import free_port


def app_with(
    settings: ServiceSettings,
    schema: str,
    routers: Sequence[APIRouter] = (),
    background_jobs: Sequence[BackgroundJob] = (),
    quiet_paths: Sequence[str] = (),
) -> FastAPI:
    """A service app built by the production factory around the routers a test needs."""
    return create_service_app(
        settings_cls=type(settings),
        settings=settings,
        state_cls=ServiceState,
        schema=schema,
        title=f"test app on {schema}",
        description="Built by a test.",
        version="0",
        tags=[],
        routers=routers,
        background_jobs=background_jobs,
        quiet_paths=quiet_paths,
    )


@asynccontextmanager
async def serve(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """Run an app's lifespan and give an HTTP client wired to it in-process."""
    async with LifespanManager(app, startup_timeout=30, shutdown_timeout=30) as manager:
        # As in production, an unhandled error becomes a 500 response rather than a raise.
        transport = httpx.ASGITransport(app=manager.app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            yield client


@asynccontextmanager
async def serve_http(
    app: Any, port: int | None = None, *, host: str = "127.0.0.1", url_host: str | None = None
) -> AsyncIterator[str]:
    """Run an ASGI app under uvicorn on `host` in this event loop; yields its base URL, naming
    `url_host` when its clients reach it by another name (containers: host.docker.internal)."""

    import uvicorn

    port = port or free_port()
    config = uvicorn.Config(app, host=host, port=port, log_config=None, lifespan="auto")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    deadline = time.monotonic() + 30
    while not server.started:
        if task.done():
            task.result()
            pytest.fail(f"uvicorn on port {port} stopped during start-up")
        if time.monotonic() > deadline:
            pytest.fail(f"uvicorn on port {port} did not start")
        await asyncio.sleep(0.02)
    try:
        yield f"http://{url_host or host}:{port}"
    finally:
        server.should_exit = True
        await task


@asynccontextmanager
async def silent_server() -> AsyncIterator[str]:
    """Accepts connections and never answers, like a service stuck on a lock; yields its URL."""

    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # until the client gives up and closes
        writer.close()

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        yield f"http://127.0.0.1:{port}"


# What the registry (micropay_common.services) does not say: the title and required settings.
EXPECTED: dict[str, dict[str, Any]] = {
    "auth": {
        "title": "MicroPay Auth",
        "extra": {},
    },
    "payment": {
        "title": "MicroPay Payments",
        "extra": {"stripe_api_key": "sk_test_local", "stripe_webhook_secret": "whsec_test"},
    },
    "transactions": {
        "title": "MicroPay Transactions",
        "extra": {},
    },
    "notifications": {
        "title": "MicroPay Notifications",
        "extra": {
            "ses_sender": "no-reply@micropay.local",
            "sns_topic_arn": "arn:aws:sns:us-east-1:123456789012:micropay-sns",
            "webhook_secrets_kms_key_id": "alias/micropay-webhook-secrets",
        },
    },
}


def as_environment_value(value: Any) -> str:
    """A setting as a deployment writes it: collections comma-separated."""
    if isinstance(value, (tuple, list, set, frozenset)):
        return ",".join(str(item) for item in value)
    return str(value)
