"""HTTP metrics of every service: a pure ASGI middleware and the `/metrics` endpoint.

The series are those Prometheus dashboards know from prometheus-fastapi-instrumentator's
defaults (`http_requests_total`, `http_request_duration_seconds`, ...), recorded for less: the
handler is the route FastAPI matched (read off the scope after the request, not matched a second
time), and each label set's children are looked up once and kept.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, Summary
from prometheus_client.exposition import generate_latest
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

LATENCY_HIGHR_BUCKETS = (
    0.01,
    0.025,
    0.05,
    0.075,
    0.1,
    0.25,
    0.5,
    0.75,
    1,
    1.5,
    2,
    2.5,
    3,
    3.5,
    4,
    4.5,
    5,
    7.5,
    10,
    30,
    60,
)
LATENCY_LOWR_BUCKETS = (0.1, 0.5, 1)
UNTEMPLATED = "none"
"""The handler of a request no route matched (404s): one series, whatever the path."""


class HttpMetrics:
    """The HTTP series of one app, and the per-label-set children already resolved."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter(
            "http_requests_total",
            "Total number of requests by method, status and handler.",
            ("method", "status", "handler"),
            registry=registry,
        )
        self.request_size = Summary(
            "http_request_size_bytes",
            "Content length of incoming requests by handler (the header's value).",
            ("handler",),
            registry=registry,
        )
        self.response_size = Summary(
            "http_response_size_bytes",
            "Content length of outgoing responses by handler (the header's value).",
            ("handler",),
            registry=registry,
        )
        self.latency_highr = Histogram(
            "http_request_duration_highr_seconds",
            "Latency with many buckets but no API specific labels.",
            buckets=LATENCY_HIGHR_BUCKETS,
            registry=registry,
        )
        self.latency = Histogram(
            "http_request_duration_seconds",
            "Latency with only few buckets by handler.",
            ("method", "handler"),
            buckets=LATENCY_LOWR_BUCKETS,
            registry=registry,
        )
        self._children: dict[tuple[str, str, str], tuple[Any, Any, Any, Any]] = {}

    def observe(
        self, method: str, status: int, handler: str, seconds: float, sizes: tuple[int, int]
    ) -> None:
        """Record one answered request."""
        key = (method, f"{status // 100}xx", handler)
        children = self._children.get(key)
        if children is None:
            children = (
                self.requests.labels(*key),
                self.request_size.labels(handler),
                self.response_size.labels(handler),
                self.latency.labels(method, handler),
            )
            self._children[key] = children
        total, request_size, response_size, latency = children
        total.inc()
        request_size.observe(sizes[0])
        response_size.observe(sizes[1])
        latency.observe(seconds)
        self.latency_highr.observe(seconds)


def _content_length(headers: Iterable[tuple[bytes, bytes]]) -> int:
    for name, value in headers:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return 0
    return 0


class HttpMetricsMiddleware:
    """Counts and times every HTTP request except those to `excluded_paths`, and the successful
    answers of `quiet_paths` (their refusals and errors are counted)."""

    def __init__(
        self,
        app: ASGIApp,
        metrics: HttpMetrics,
        excluded_paths: Iterable[str],
        quiet_paths: Iterable[str] = (),
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.excluded_paths = frozenset(excluded_paths)
        self.quiet_paths = frozenset(quiet_paths)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve one request, then record it under the route that served it."""
        if scope["type"] != "http" or scope["path"] in self.excluded_paths:
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500
        response_size = 0

        async def send_measured(message: Message) -> None:
            nonlocal status, response_size
            if message["type"] == "http.response.start":
                status = message["status"]
                response_size = _content_length(message.get("headers", ()))
            await send(message)

        try:
            await self.app(scope, receive, send_measured)
        finally:
            if status >= 400 or scope["path"] not in self.quiet_paths:
                route = scope.get("route")
                self.metrics.observe(
                    scope["method"],
                    status,
                    getattr(route, "path", None) or UNTEMPLATED,
                    time.perf_counter() - started,
                    (_content_length(scope["headers"]), response_size),
                )


def metrics_endpoint(registry: CollectorRegistry) -> Callable[[Request], Awaitable[Response]]:
    """The `/metrics` endpoint of an app: its registry in Prometheus' text format."""

    async def metrics(request: Request) -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    return metrics


AWS_SECONDS = "micropay_aws_request_duration_seconds"


class AwsCallMetrics:
    """The duration and outcome of every AWS API call a boto3 client makes (SES, SNS, KMS,
    Cognito), by service and operation, from botocore's own call events."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.seconds = Histogram(
            AWS_SECONDS,
            "Time spent waiting on an AWS API call, by service, operation and outcome (ok, or "
            "error: an error answer or no answer at all).",
            ("service", "operation", "outcome"),
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=registry,
        )

    def watch(self, client: Any) -> None:
        """Time the calls of a boto3 client from now on."""
        events = client.meta.events
        events.register("before-call", self._started)
        events.register("after-call", self._answered)
        events.register("after-call-error", self._failed)

    def observe(self, service: str, operation: str, outcome: str, seconds: float) -> None:
        """Record one call made without boto3 (the delivery worker's own SES and SNS calls)."""
        self.seconds.labels(service, operation, outcome).observe(seconds)

    def _started(self, model: Any, context: dict[str, Any], **_: Any) -> None:
        service = model.service_model.service_id.hyphenize()
        context["micropay_call"] = (service, model.name, time.perf_counter())

    def _answered(self, http_response: Any, context: dict[str, Any], **_: Any) -> None:
        failed = getattr(http_response, "status_code", 500) >= 400
        self._observe(context, "error" if failed else "ok")

    def _failed(self, context: dict[str, Any], **_: Any) -> None:
        self._observe(context, "error")

    def _observe(self, context: dict[str, Any], outcome: str) -> None:
        call = context.pop("micropay_call", None)
        if call is not None:
            service, operation, started = call
            self.seconds.labels(service, operation, outcome).observe(time.perf_counter() - started)
