"""nginx for tests: whether it is installed, raw HTTP requests and output kept for failures."""

from __future__ import annotations

import http.client
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pytest

from stack.gateway import find_nginx
from stack.processes import ManagedProcess

NGINX = find_nginx()


requires_nginx = pytest.mark.skipif(
    NGINX is None, reason="nginx is not installed (.ci/run installs it)"
)


@dataclass
class Response:
    """An HTTP answer, headers kept as sent (repeats included)."""

    status: int
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str | None:
        """The first value of header `name` (case-insensitive)."""
        values = self.header_values(name)
        return values[0] if values else None

    def header_values(self, name: str) -> list[str]:
        """Every value of header `name`."""
        return [value for key, value in self.headers if key.lower() == name.lower()]

    def json(self) -> Any:
        """The body parsed as JSON."""
        return json.loads(self.body)


def request(
    port: int,
    method: str,
    path: str,
    headers: Mapping[str, str] | None = None,
    body: bytes | None = None,
    *,
    source: str | None = None,
) -> Response:
    """Send `path` exactly as written (no normalisation, unlike most HTTP clients).

    `source` is the loopback address to send from (127.0.0.2 ...), for per-address rules.
    """
    source_address = (source, 0) if source is not None else None
    connection = http.client.HTTPConnection(
        "127.0.0.1", port, timeout=10, source_address=source_address
    )
    try:
        connection.request(method, path, body=body, headers=dict(headers or {}))
        answer = connection.getresponse()
        return Response(answer.status, answer.getheaders(), answer.read())
    finally:
        connection.close()


def wait_until_answers(port: int, path: str, process: ManagedProcess, timeout: float = 15) -> None:
    """Poll until the server on `port` answers `path`, failing early if `process` died."""
    deadline = time.monotonic() + timeout
    while True:
        if not process.alive():
            pytest.fail(f"{process.name} exited:\n" + "\n".join(process.tail()))
        try:
            request(port, "GET", path)
            return
        except OSError:
            if time.monotonic() > deadline:
                pytest.fail(f"{process.name} did not answer on port {port}")
            time.sleep(0.05)


class OutputLines:
    """An output sink that keeps the lines (shown when a test fails)."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def __call__(self, name: str, line: str) -> None:
        self.lines.append(f"{name} | {line}")
