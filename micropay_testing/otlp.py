"""An OTLP/HTTP trace receiver in the test process: the services, run as processes, export their
spans to it as they would to a collector, and the test reads them as an in-memory exporter's."""

from __future__ import annotations

import gzip
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span as ProtoSpan

TRACES_PATH = "/v1/traces"


@dataclass(frozen=True)
class ReceivedSpan:
    """One exported span, ids in hex as logs print them."""

    service: str
    name: str
    kind: str
    """SERVER, CLIENT, PRODUCER, CONSUMER or INTERNAL."""
    trace_id: str
    span_id: str
    parent_span_id: str | None
    attributes: dict[str, Any]
    links: tuple[tuple[str, str], ...]
    """(trace id, span id) of each linked span."""
    error: bool


def _value(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    if kind == "array_value":
        return [_value(item) for item in value.array_value.values]
    if kind is None:
        return None
    return getattr(value, kind)


def _decode(span: ProtoSpan, service: str) -> ReceivedSpan:
    return ReceivedSpan(
        service=service,
        name=span.name,
        kind=ProtoSpan.SpanKind.Name(span.kind).removeprefix("SPAN_KIND_"),
        trace_id=span.trace_id.hex(),
        span_id=span.span_id.hex(),
        parent_span_id=span.parent_span_id.hex() or None,
        attributes={a.key: _value(a.value) for a in span.attributes},
        links=tuple((link.trace_id.hex(), link.span_id.hex()) for link in span.links),
        error=span.status.code == span.status.STATUS_CODE_ERROR,
    )


@dataclass
class TraceReceiver:
    """The spans received so far, by arrival."""

    spans: list[ReceivedSpan] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, body: bytes) -> None:
        """Record the spans of one `ExportTraceServiceRequest`."""
        request = ExportTraceServiceRequest()
        request.ParseFromString(body)
        received: list[ReceivedSpan] = []
        for resource_spans in request.resource_spans:
            attributes = {a.key: _value(a.value) for a in resource_spans.resource.attributes}
            service = str(attributes.get("service.name", ""))
            for scope_spans in resource_spans.scope_spans:
                received.extend(_decode(span, service) for span in scope_spans.spans)
        with self._lock:
            self.spans.extend(received)

    def trace(self, trace_id: str) -> list[ReceivedSpan]:
        """The spans of one trace received so far."""
        with self._lock:
            return [span for span in self.spans if span.trace_id == trace_id]

    def wait_for(
        self, condition: Callable[[list[ReceivedSpan]], bool], trace_id: str, timeout: float
    ) -> list[ReceivedSpan]:
        """The trace's spans once `condition` holds for them; AssertionError after `timeout`."""
        deadline = time.monotonic() + timeout
        while True:
            spans = self.trace(trace_id)
            if condition(spans):
                return spans
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"trace {trace_id} incomplete after {timeout:g}s:\n" + render_tree(spans)
                )
            time.sleep(0.2)


def render_tree(spans: list[ReceivedSpan]) -> str:
    """The spans as an indented tree, `service: name [kind]` per line, children in order of
    arrival; spans whose parent is not among them are roots."""
    by_id = {span.span_id: span for span in spans}
    children: dict[str | None, list[ReceivedSpan]] = {}
    for span in spans:
        parent = span.parent_span_id if span.parent_span_id in by_id else None
        children.setdefault(parent, []).append(span)
    lines: list[str] = []

    def walk(parent: str | None, depth: int) -> None:
        for span in children.get(parent, []):
            lines.append(f"{'    ' * depth}{span.service}: {span.name} [{span.kind}]")
            walk(span.span_id, depth + 1)

    walk(None, 0)
    return "\n".join(lines)


@contextmanager
def otlp_receiver(port: int) -> Iterator[TraceReceiver]:
    """Listen for OTLP/HTTP (protobuf) trace exports on 127.0.0.1:`port` until the block ends."""
    receiver = TraceReceiver()
    ok = ExportTraceServiceResponse().SerializeToString()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            if self.headers.get("Content-Encoding") == "gzip":
                body = gzip.decompress(body)
            if self.path != TRACES_PATH:
                self.send_response(404)
                self.end_headers()
                return
            receiver.add(body)
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", str(len(ok)))
            self.end_headers()
            self.wfile.write(ok)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    thread = threading.Thread(target=server.serve_forever, name="otlp-receiver", daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()
