"""OpenTelemetry tracing, off unless an OTLP endpoint is configured.

Configured by the standard variables: `OTEL_EXPORTER_OTLP_ENDPOINT` (or
`OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) switches it on, `OTEL_SDK_DISABLED=true` keeps it off,
`OTEL_SERVICE_NAME` overrides the service's own name, and the exporter (OTLP over HTTP) and the
sampler read the rest of `OTEL_*` themselves. Off, nothing is installed: no middleware, no
instrumentation, no span on any path; the functions below answer None or do nothing.

On, the maintained instrumentations trace FastAPI (server spans), SQLAlchemy, httpx and
botocore (client spans); the app's asyncpg pool (`Direct`) and the calls to other services
(`micropay_common.http`, on aiohttp) get client spans of their own, the latter sending the
trace context on (`inject`). The trace context travels with the work that outlives a request:
an event carries the `traceparent` of the transaction that wrote it
(`EventEnvelope.traceparent`), the relay's delivery continues that trace (`continued`), and so
does a notification's send.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from opentelemetry import trace
from opentelemetry.trace import SpanKind as SpanKind
from opentelemetry.trace import Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from micropay_common.db import Direct

if TYPE_CHECKING:
    from fastapi import FastAPI
    from sqlalchemy.ext.asyncio import AsyncEngine

logger = logging.getLogger("micropay.telemetry")

TRACER_NAME = "micropay"
UNTRACED_PATHS = ("/health/live", "/health/ready", "/metrics")
"""Probes and scrapes: no span, as they are neither logged nor counted either."""

_ENDPOINT_VARIABLES = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
ENVIRONMENT_VARIABLES = (
    *_ENDPOINT_VARIABLES,
    "OTEL_SDK_DISABLED",
    "OTEL_SERVICE_NAME",
    "OTEL_RESOURCE_ATTRIBUTES",
    "OTEL_TRACES_SAMPLER",
    "OTEL_TRACES_SAMPLER_ARG",
    "OTEL_EXPORTER_OTLP_HEADERS",
    "OTEL_EXPORTER_OTLP_TIMEOUT",
    "OTEL_BSP_SCHEDULE_DELAY",
)
"""The standard variables a deployment may set for the services (the SDK reads them)."""
_propagator = TraceContextTextMapPropagator()
_provider: Any = None
"""The process's TracerProvider once `configure` ran with tracing on; None while off."""


def tracing_requested(environ: Mapping[str, str] | None = None) -> bool:
    """Whether the environment asks for tracing: an OTLP endpoint set and the SDK not disabled."""
    env = os.environ if environ is None else environ
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    return any(env.get(name, "").strip() for name in _ENDPOINT_VARIABLES)


def enabled() -> bool:
    """Whether this process traces (`configure` found an endpoint)."""
    return _provider is not None


def configure(service_name: str) -> bool:
    """Set up tracing for the process when the environment asks for it; True when on.

    Once per process: the first service name wins (`OTEL_SERVICE_NAME` above all).
    """
    global _provider
    if _provider is not None:
        return True
    if not tracing_requested():
        return False
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.instrumentation.botocore import BotocoreInstrumentor
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    resource = Resource.create(
        {SERVICE_NAME: os.environ.get("OTEL_SERVICE_NAME", "").strip() or service_name}
    )
    sampler = None if os.environ.get("OTEL_TRACES_SAMPLER") else _default_sampler()
    provider = TracerProvider(resource=resource, sampler=sampler)
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    HTTPXClientInstrumentor().instrument(tracer_provider=provider)
    BotocoreInstrumentor().instrument(tracer_provider=provider)  # type: ignore[no-untyped-call]
    _provider = provider
    logger.info("tracing on: spans exported over OTLP as %s", resource.attributes[SERVICE_NAME])
    return True


def _default_sampler() -> Any:
    """Every trace a request or an event starts; no trace made of one lone client call.

    The background loops (the outbox relay's and the delivery worker's polls, the token
    refreshes) query the database and call out every few seconds: as roots, those client spans
    would bury the traces of user actions. A client span inside a trace is always kept.
    """
    from opentelemetry.sdk.trace.sampling import (
        Decision,
        ParentBased,
        Sampler,
        SamplingResult,
    )

    class NoLoneClientCalls(Sampler):
        def should_sample(
            self,
            parent_context: Any,
            trace_id: int,
            name: str,
            kind: SpanKind | None = None,
            attributes: Any = None,
            links: Sequence[Any] | None = None,
            trace_state: Any = None,
        ) -> SamplingResult:
            if kind == SpanKind.CLIENT:
                return SamplingResult(Decision.DROP)
            return SamplingResult(Decision.RECORD_AND_SAMPLE, attributes)

        def get_description(self) -> str:
            return "NoLoneClientCalls"

    return ParentBased(root=NoLoneClientCalls())


def instrument_app(app: FastAPI) -> None:
    """Server spans for every request but probes and scrapes (tracing on only)."""
    if _provider is None:
        return
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

    FastAPIInstrumentor.instrument_app(
        app,
        tracer_provider=_provider,
        excluded_urls=",".join(UNTRACED_PATHS),
        # The ASGI message spans (one per body chunk) say nothing the server span does not.
        exclude_spans=["receive", "send"],
    )


def instrument_engine(engine: AsyncEngine) -> None:
    """Client spans for the statements of a SQLAlchemy engine (tracing on only)."""
    if _provider is None:
        return
    from opentelemetry.instrumentation.sqlalchemy.engine import EngineTracer
    from opentelemetry.metrics import get_meter

    # The instrumentor's own entry point instruments once per process; each app has an engine.
    EngineTracer(  # type: ignore[no-untyped-call]
        trace.get_tracer(TRACER_NAME, tracer_provider=_provider),
        engine.sync_engine,
        get_meter(TRACER_NAME).create_up_down_counter("db.client.connections.usage"),
        enable_commenter=False,
    )


def traced_direct(direct: Direct, database: str | None) -> Direct:
    """`direct`, or while tracing a `Direct` on the same pool whose statements are spans."""
    if _provider is None:
        return direct
    return TracedDirect(direct.pool, database)


class TracedDirect(Direct):
    """A `Direct` that wraps each statement in a client span (asyncpg has no maintained
    instrumentation that installs beside the others)."""

    def __init__(self, pool: Any, database: str | None) -> None:
        super().__init__(pool)
        self._tracer = trace.get_tracer(TRACER_NAME)
        self._attributes = {"db.system.name": "postgresql", "db.namespace": database or ""}

    async def _run(self, method: str, statement: Any, values: dict[str, Any]) -> Any:
        sql: str = statement.sql
        with self._tracer.start_as_current_span(
            _statement_name(sql),
            kind=SpanKind.CLIENT,
            attributes={**self._attributes, "db.query.text": sql},
        ):
            return await super()._run(method, statement, values)


def _statement_name(sql: str) -> str:
    """`SELECT transactions.transfer` for a function call, else the statement's first word."""
    words = sql.split(None, 2)
    if not words:
        return "SQL"
    if words[0].upper() == "SELECT" and len(words) > 1:
        return f"SELECT {words[1].split('(', 1)[0]}"
    return words[0]


def _span_context(traceparent: str) -> Any:
    return trace.get_current_span(
        _propagator.extract({"traceparent": traceparent})
    ).get_span_context()


def current_traceparent() -> str | None:
    """The W3C `traceparent` of the current span, or None (tracing off, or no span)."""
    if _provider is None:
        return None
    carrier: dict[str, str] = {}
    _propagator.inject(carrier)
    return carrier.get("traceparent")


def current_ids() -> tuple[str, str] | None:
    """The current trace id and span id in hex, for logs; None outside a span."""
    if _provider is None:
        return None
    context = trace.get_current_span().get_span_context()
    if not context.is_valid:
        return None
    return format(context.trace_id, "032x"), format(context.span_id, "016x")


@contextlib.contextmanager
def continued(
    traceparent: str | None,
    name: str,
    *,
    kind: SpanKind = SpanKind.INTERNAL,
    attributes: Mapping[str, Any] | None = None,
    linked: Sequence[str | None] = (),
) -> Iterator[None]:
    """A span continuing the trace `traceparent` names (a new trace without one), linked to
    the traces of `linked` (work done together with it); nothing while tracing is off. An
    exception escaping it marks the span failed."""
    if _provider is None:
        yield
        return
    parent = _propagator.extract({"traceparent": traceparent}) if traceparent else None
    links = [
        trace.Link(
            trace.get_current_span(_propagator.extract({"traceparent": other})).get_span_context()
        )
        for other in linked
        if other
    ]
    with trace.get_tracer(TRACER_NAME).start_as_current_span(
        name, context=parent, kind=kind, attributes=dict(attributes or {}), links=links
    ):
        yield


@contextlib.contextmanager
def client_span(name: str, attributes: Mapping[str, Any] | None = None) -> Iterator[Any]:
    """A client span around a call to another system; yields the span (None while off)."""
    if _provider is None:
        yield None
        return
    with trace.get_tracer(TRACER_NAME).start_as_current_span(
        name, kind=SpanKind.CLIENT, attributes=dict(attributes or {})
    ) as span:
        yield span


def inject(headers: dict[str, str]) -> None:
    """Add the W3C `traceparent` (and `tracestate`) of the current span to outgoing request
    headers, so the peer's handling joins the trace; nothing while tracing is off."""
    if _provider is not None:
        _propagator.inject(headers)


def set_attribute(span: Any, key: str, value: Any) -> None:
    """Set an attribute on a span (a no-op for None, i.e. tracing off)."""
    if span is not None:
        span.set_attribute(key, value)


def mark_failed(span: Any, description: str) -> None:
    """Set a span's status to error (a no-op for None, i.e. tracing off)."""
    if span is not None:
        span.set_status(Status(StatusCode.ERROR, description))


def mark_current_failed(description: str) -> None:
    """Set the current span's status to error (a no-op while tracing is off)."""
    if _provider is not None:
        trace.get_current_span().set_status(Status(StatusCode.ERROR, description))


def shutdown() -> None:
    """Flush the spans not exported yet (the process is stopping)."""
    if _provider is not None:
        _provider.force_flush(5000)
