"""Tracing off (no OTLP endpoint): nothing of OpenTelemetry on any path.

Tracing on is tested with whole services exporting to a receiver (tests/e2e/test_tracing.py),
never in this process, whose global tracer provider every other test shares.
"""

from __future__ import annotations

import logging

import pytest
from fastapi import FastAPI
from opentelemetry import trace
from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor

from micropay_common import telemetry
from micropay_common.db import Direct
from micropay_common.events import EventEnvelope, TransferCompleted
from micropay_common.logging import JsonFormatter
from micropay_common.settings import ServiceSettings
from micropay_common.state import AppState
from micropay_testing.apps import app_with, serve


@pytest.mark.parametrize(
    ("environ", "requested"),
    [
        ({}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "  "}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, True),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4318/v1/traces"}, True),
        (
            {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318", "OTEL_SDK_DISABLED": "TRUE"},
            False,
        ),
        (
            {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318", "OTEL_SDK_DISABLED": "false"},
            True,
        ),
    ],
)
def test_tracing_is_on_only_with_an_endpoint_and_not_disabled(
    environ: dict[str, str], requested: bool
) -> None:
    assert telemetry.tracing_requested(environ) is requested


def _middleware_classes(app: FastAPI) -> list[str]:
    return [middleware.cls.__name__ for middleware in app.user_middleware]  # type: ignore[attr-defined]


async def test_without_an_endpoint_an_app_installs_nothing(
    service_settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in (
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        "OTEL_SDK_DISABLED",
    ):
        monkeypatch.delenv(name, raising=False)
    settings: ServiceSettings = service_settings("transactions")
    app = app_with(settings, "transactions", [])
    assert not telemetry.enabled()
    assert not any("OpenTelemetry" in name for name in _middleware_classes(app))
    assert not getattr(app, "_is_instrumented_by_opentelemetry", False)
    assert not HTTPXClientInstrumentor().is_instrumented_by_opentelemetry
    # The global provider is the API's placeholder: no SDK was set up.
    assert type(trace.get_tracer_provider()).__name__ == "ProxyTracerProvider"
    async with serve(app) as client:
        assert (await client.get("/health/live")).status_code == 200
        state = AppState.of(app)
        # The app's asyncpg pool is the plain one: no span around its statements.
        assert type(state.direct) is Direct
        answer = await client.get("/health/ready")
        assert answer.status_code == 200
        assert "traceparent" not in answer.headers


def test_without_tracing_events_and_logs_carry_no_trace() -> None:
    event = TransferCompleted(
        transfer_id="t",
        from_user_id="a",
        from_email="a@example.com",
        to_user_id="b",
        to_email="b@example.com",
        amount=100,
        currency="EUR",
    )
    envelope = EventEnvelope.of(event)
    assert envelope.traceparent is None
    assert "traceparent" not in envelope.model_dump(mode="json")
    assert telemetry.current_traceparent() is None
    assert telemetry.current_ids() is None
    with telemetry.continued("00-" + "1" * 32 + "-" + "2" * 16 + "-01", "work"):
        assert telemetry.current_traceparent() is None
    record = logging.LogRecord("micropay.test", logging.INFO, __file__, 1, "hello", None, None)
    line = JsonFormatter("transactions").format(record)
    assert "trace_id" not in line
    assert "span_id" not in line


def test_an_envelope_keeps_the_traceparent_it_was_given() -> None:
    traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    envelope = EventEnvelope.model_validate(
        {
            "id": "5a0f7f34-4c36-4b0e-9d6b-0d3a3d1b6f42",
            "type": "transfer.completed",
            "occurred_at": "2026-12-02T20:00:00Z",
            "producer": "transactions",
            "data": {},
            "traceparent": traceparent,
        }
    )
    assert envelope.model_dump(mode="json")["traceparent"] == traceparent
    with pytest.raises(ValueError, match="traceparent"):
        EventEnvelope.model_validate({**envelope.model_dump(mode="json"), "traceparent": "x" * 56})
