"""ASGI middleware: request id in and out, and one access log line per request."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from micropay_common.request_context import REQUEST_ID_HEADER, accept_request_id, request_id_var

access_logger = logging.getLogger("micropay.access")


_REQUEST_ID_HEADER = REQUEST_ID_HEADER.lower().encode("latin-1")
_UNLOGGED_PREFIXES = ("/health/", "/metrics")


class RequestIdMiddleware:
    """Accepts or generates X-Request-ID, exposes it to logs, and returns it.

    Writes one access line per request, except for health checks and metrics, and except for
    the successful answers of `quiet_paths` (a route called for every request of every user,
    such as the gateway's token check, whose caller logs the request it guards); their
    refusals and errors are logged like any other.
    """

    def __init__(self, app: ASGIApp, quiet_paths: Iterable[str] = ()) -> None:
        self.app = app
        self.quiet_paths = frozenset(quiet_paths)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve one request with its id bound to the context."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        supplied = None
        for name, value in scope["headers"]:
            if name == b"x-request-id":
                supplied = value.decode("latin-1")
                break
        request_id = accept_request_id(supplied)
        token = request_id_var.set(request_id)
        scope.setdefault("state", {})["request_id"] = request_id
        started = time.perf_counter()
        status_code = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status_code
            if message["type"] == "http.response.start":
                status_code = message["status"]
                # Appended to the raw list: no header object is built for each answer.
                message["headers"] = [
                    *message.get("headers", ()),
                    (_REQUEST_ID_HEADER, request_id.encode("latin-1")),
                ]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            path = scope.get("path", "")
            quiet = status_code < 400 and path in self.quiet_paths
            if not quiet and not path.startswith(_UNLOGGED_PREFIXES):
                access_logger.info(
                    "%s %s %s",
                    scope.get("method"),
                    path,
                    status_code,
                    extra={
                        "method": scope.get("method"),
                        "path": path,
                        "status": status_code,
                        "duration_ms": round((time.perf_counter() - started) * 1000, 2),
                    },
                )
            request_id_var.reset(token)
