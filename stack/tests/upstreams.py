"""Small real HTTP servers that stand in for the services behind the gateway in tests."""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

GOOD_TOKEN = "good"
# Makes the stand-in answer /auth/verify like today's auth service, which has no such route.
MISSING_ROUTE_TOKEN = "no-verify-route"
USER = {"X-User-Id": "user-123", "X-User-Email": "alice@example.com", "X-User-Groups": "users"}

DOCS_HTML = """<!DOCTYPE html><html><body><script>
const ui = SwaggerUIBundle({
    url: '/openapi.json',
oauth2RedirectUrl: window.location.origin + '/docs/oauth2-redirect',
})
</script></body></html>
"""


@dataclass
class Received:
    """One request as the upstream saw it."""

    method: str
    path: str
    headers: dict[str, list[str]]
    body: bytes

    def header(self, name: str) -> str | None:
        """The first value of header `name` (case-insensitive)."""
        values = self.headers.get(name.lower())
        return values[0] if values else None


@dataclass
class EchoUpstream:
    """A threaded HTTP server that records every request and echoes it back as JSON."""

    name: str
    verifies_tokens: bool = False
    received: list[Received] = field(default_factory=list)
    server: ThreadingHTTPServer | None = None

    @property
    def port(self) -> int:
        """The port it listens on."""
        assert self.server is not None
        return int(self.server.server_address[1])

    def start(self) -> EchoUpstream:
        """Listen on a free 127.0.0.1 port."""
        upstream = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                headers: dict[str, list[str]] = {}
                for key, value in self.headers.items():
                    headers.setdefault(key.lower(), []).append(value)
                request = Received(self.command, self.path, headers, body)
                upstream.received.append(request)
                status, extra, payload, content_type = upstream.answer(request)
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(payload)))
                # A real service echoes the request id too; the gateway must not duplicate it.
                if request.header("X-Request-ID"):
                    self.send_header("X-Request-ID", request.header("X-Request-ID") or "")
                for key, value in extra.items():
                    self.send_header(key, value)
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(payload)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _handle  # noqa: N815

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()
        return self

    def stop(self) -> None:
        """Stop listening."""
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()

    def answer(self, request: Received) -> tuple[int, dict[str, str], bytes, str]:
        """Status, extra headers, body and content type for `request`."""
        path = request.path.split("?", 1)[0]
        if self.verifies_tokens and path == "/auth/verify":
            authorization = request.header("Authorization") or ""
            if authorization == f"Bearer {GOOD_TOKEN}":
                return 200, dict(USER), b"", "text/plain"
            if authorization == f"Bearer {MISSING_ROUTE_TOKEN}":
                return 404, {}, b'{"type":"not_found"}', "application/problem+json"
            body = b'{"type":"invalid_token","title":"Unauthorized","status":401}'
            return 401, {"WWW-Authenticate": "Bearer"}, body, "application/problem+json"
        if path == "/docs":
            return 200, {}, DOCS_HTML.encode(), "text/html; charset=utf-8"
        if path == "/openapi.json":
            return (
                200,
                {},
                json.dumps({"openapi": "3.1.0", "service": self.name}).encode(),
                ("application/json"),
            )
        echo = {
            "service": self.name,
            "method": request.method,
            "path": request.path,
            "headers": request.headers,
        }
        return 200, {}, json.dumps(echo).encode(), "application/json"
