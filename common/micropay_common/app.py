"""The FastAPI application factory every service uses, so all four behave alike."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any, TypeVar

from fastapi import APIRouter, FastAPI
from prometheus_client import CollectorRegistry, GCCollector, PlatformCollector, ProcessCollector

from micropay_common import health, telemetry
from micropay_common.db import Direct, create_engine, create_pool, create_sessionmaker
from micropay_common.errors import document_problems, install_error_handlers
from micropay_common.logging import configure_logging
from micropay_common.metrics import (
    AwsCallMetrics,
    HttpMetrics,
    HttpMetricsMiddleware,
    metrics_endpoint,
)
from micropay_common.middleware import RequestIdMiddleware
from micropay_common.revocation import RevocationFeed
from micropay_common.security import TokenVerifier, security_refusals_counter
from micropay_common.service_auth import ServiceTokenProvider
from micropay_common.settings import ServiceSettings, load_settings
from micropay_common.state import ServiceState
from micropay_common.wakeup import Listener

logger = logging.getLogger("micropay.app")

StateT = TypeVar("StateT", bound=ServiceState[Any])
LifecycleHook = Callable[[StateT], Awaitable[None]]
"""A start-up or shut-down hook: given the service's state, opens or closes what it adds."""
BackgroundJob = Callable[[FastAPI], Awaitable[None]]
"""A job started with the app and cancelled when it stops; it reads the app's state."""

COMMON_TAGS = [
    {"name": "health", "description": "Liveness, readiness and metrics."},
    {"name": "internal", "description": "Service-to-service endpoints; `services` group only."},
]


def create_service_app(
    *,
    settings_cls: type[ServiceSettings],
    settings: ServiceSettings | None = None,
    state_cls: type[StateT],
    schema: str,
    title: str,
    description: str,
    version: str,
    tags: Sequence[dict[str, Any]],
    routers: Sequence[APIRouter],
    on_startup: Sequence[LifecycleHook[StateT]] = (),
    on_shutdown: Sequence[LifecycleHook[StateT]] = (),
    background_jobs: Sequence[BackgroundJob] = (),
    quiet_paths: Sequence[str] = (),
) -> FastAPI:
    """Build a service: settings, logging, database, auth, errors, health, metrics, jobs.

    Each start builds a `state_cls` (the service's `ServiceState` subclass), runs `on_startup`
    on it and attaches it to the app; `state_cls.of(app)` reads it back. `quiet_paths` are
    routes called for every request of every user (the gateway's token check): their successful
    answers are neither logged nor counted in the HTTP metrics, as health checks are not; their
    refusals and errors are.
    """
    # JSON logs from the first line on: uvicorn imports the app after configuring its own
    # plain-text loggers, and logs "Started server process" before the lifespan runs.
    default_name = settings_cls.model_fields["service_name"].default
    service_name = settings.service_name if settings else str(default_name)
    configure_logging(
        service_name, settings.log_level if settings else os.environ.get("LOG_LEVEL", "INFO")
    )
    # Off (no OTEL_EXPORTER_OTLP_ENDPOINT): nothing is installed on the request path.
    tracing = telemetry.configure(service_name)

    # A registry per app keeps apps built side by side (tests, benchmarks) from sharing series.
    registry = CollectorRegistry(auto_describe=True)
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)
    security_refusals = security_refusals_counter(registry)
    aws_calls = AwsCallMetrics(registry)
    # Services add their own series (say, time spent waiting on a provider) to the same
    # registry, through `state.metrics_registry`.

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        resolved = settings or load_settings(settings_cls)
        configure_logging(resolved.service_name, resolved.log_level)
        engine = create_engine(resolved, schema)
        if tracing:
            telemetry.instrument_engine(engine)
        # One LISTEN connection per process: the deny-list feed and the jobs share it.
        listener = Listener(
            resolved.database_url, application_name=f"{resolved.service_name}-listener"
        )
        revocations = RevocationFeed.from_settings(resolved, listener)
        state = state_cls(
            settings=resolved,
            schema=schema,
            engine=engine,
            sessionmaker=create_sessionmaker(engine),
            direct=telemetry.traced_direct(
                Direct(await create_pool(resolved, schema)), engine.url.database
            ),
            token_verifier=TokenVerifier.from_settings(resolved, revocations.deny_set),
            revocations=revocations,
            listener=listener,
            service_tokens=ServiceTokenProvider.from_settings(resolved),
            metrics_registry=registry,
            security_refusals=security_refusals,
            aws_calls=aws_calls,
        )
        for hook in on_startup:
            await hook(state)
        await listener.start()
        # Before the first request: a logout committed before this replica started is known.
        await revocations.start()
        state.attach(app)
        tasks = [
            asyncio.create_task(_supervise(job, app), name=getattr(job, "__name__", "job"))
            for job in background_jobs
        ]
        logger.info("%s started", resolved.service_name)
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            for hook in on_shutdown:
                await hook(state)
            await revocations.stop()
            await listener.stop()
            await state.token_verifier.aclose()
            await state.direct.pool.close()
            await state.engine.dispose()
            telemetry.shutdown()

    app = FastAPI(
        title=title,
        description=description,
        version=version,
        openapi_tags=[*tags, *COMMON_TAGS],
        lifespan=lifespan,
        # FastAPI's own hooks stay off: left on, every request asks the global providers
        # whether one has been configured since. Tracing, when on, is the instrumentation's.
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    app.add_middleware(RequestIdMiddleware, quiet_paths=quiet_paths)
    install_error_handlers(app)
    document_problems(app)
    app.include_router(health.router)
    for router in routers:
        app.include_router(router)
    app.add_middleware(
        HttpMetricsMiddleware,
        metrics=HttpMetrics(registry),
        excluded_paths=["/metrics", "/health/live", "/health/ready"],
        quiet_paths=quiet_paths,
    )
    app.add_route("/metrics", metrics_endpoint(registry), include_in_schema=False)
    if tracing:
        telemetry.instrument_app(app)
    return app


async def _supervise(job: BackgroundJob, app: FastAPI) -> None:
    """Keep a background job alive: log and restart it if it ever crashes."""
    while True:
        try:
            await job(app)
            return
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("background job %s crashed; restarting", getattr(job, "__name__", job))
            await asyncio.sleep(1.0)
