"""HTTP client for calls to other MicroPay services: timeouts, request id, service token, trace.

aiohttp rather than httpx: the outbox relay posts every event through this client, and an httpx
request costs several times the client CPU of an aiohttp one (anyio, sniffio and h11 on every
call), a large share of a service's CPU on the transfer path.
"""

from __future__ import annotations

import functools
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
import certifi
import orjson
from multidict import CIMultiDictProxy
from yarl import URL

from micropay_common import telemetry
from micropay_common.errors import ServiceUnavailable, UpstreamError
from micropay_common.request_context import REQUEST_ID_HEADER, current_request_id
from micropay_common.service_auth import ServiceTokenProvider

CONNECT_TIMEOUT_SECONDS = 3.0
KEEPALIVE_SECONDS = 4.0
"""How long an idle connection is kept: under uvicorn's 5 s, so the client never reuses a
connection the peer is closing at that moment (a POST on it would fail, and is not retried)."""


@dataclass(frozen=True, slots=True)
class ServiceResponse:
    """A peer's answer, read in full (its connection is back in the pool)."""

    status_code: int
    headers: CIMultiDictProxy[str]
    """Case-insensitive, as received."""
    content: bytes
    charset: str | None = None
    """The charset the Content-Type names, if any."""

    @property
    def is_success(self) -> bool:
        """Whether the status is 2xx."""
        return 200 <= self.status_code < 300

    @property
    def text(self) -> str:
        """The body decoded by its charset (UTF-8 if none or unknown), undecodable bytes
        replaced."""
        try:
            return self.content.decode(self.charset or "utf-8", errors="replace")
        except LookupError:
            return self.content.decode("utf-8", errors="replace")

    def json(self) -> Any:
        """The body parsed as JSON; ValueError when it is not JSON."""
        return orjson.loads(self.content)


@functools.cache
def _tls_context() -> ssl.SSLContext:
    # certifi's bundle, as httpx and botocore trust: the internal load balancers' ACM
    # certificates and AWS's endpoints chain to Amazon's public roots (docs/aws.md).
    return ssl.create_default_context(cafile=certifi.where())


def client_session(*, timeout: float, connections: int = 100) -> aiohttp.ClientSession:
    """An aiohttp session for calls out of a service: `timeout` for a whole exchange (connecting
    within CONNECT_TIMEOUT_SECONDS), at most `connections` at once, idle ones kept
    KEEPALIVE_SECONDS, certifi's CAs for TLS, no cookies kept. Open it inside the running loop."""
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(
            ssl=_tls_context(), limit=connections, keepalive_timeout=KEEPALIVE_SECONDS
        ),
        timeout=aiohttp.ClientTimeout(total=timeout, connect=min(timeout, CONNECT_TIMEOUT_SECONDS)),
        # What a peer sets means nothing to the next call.
        cookie_jar=aiohttp.DummyCookieJar(),
    )


class ServiceClient:
    """Calls one peer service as this service's account; retries once after a 401."""

    def __init__(
        self, base_url: str, tokens: ServiceTokenProvider, *, timeout: float = 10.0
    ) -> None:
        self.base_url = base_url
        self.tokens = tokens
        self.timeout = timeout
        self._prefix = base_url.rstrip("/") + "/"
        self._session: aiohttp.ClientSession | None = None

    def _open_session(self) -> aiohttp.ClientSession:
        # Made on first use, inside the loop that runs the calls (aiohttp binds it to the loop).
        if self._session is None:
            self._session = client_session(timeout=self.timeout)
        return self._session

    async def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        content: bytes | str | None = None,
        params: Mapping[str, str | int] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> ServiceResponse:
        """Send a request with the service token and the current request id; `json` is sent
        as a JSON body, `content` as the body as given."""
        if json is not None and content is not None:
            raise TypeError("give json or content, not both")
        url = self._prefix + path.lstrip("/")
        base_headers = dict(headers or {})
        body: bytes | None
        if json is not None:
            body = orjson.dumps(json)
            base_headers["Content-Type"] = "application/json"
        else:
            body = content.encode() if isinstance(content, str) else content
        for attempt in (1, 2):
            sent = dict(base_headers)
            sent["Authorization"] = f"Bearer {await self.tokens.token()}"
            request_id = current_request_id()
            if request_id:
                sent[REQUEST_ID_HEADER] = request_id
            response = await self._send(method, url, params, sent, body)
            if response.status_code != 401:
                return response
            if attempt == 1:
                self.tokens.invalidate()
        raise UpstreamError("The peer service refused this service's credentials.")

    async def _send(
        self,
        method: str,
        url: str,
        params: Mapping[str, str | int] | None,
        headers: dict[str, str],
        body: bytes | None,
    ) -> ServiceResponse:
        """One HTTP exchange, as a client span while tracing."""
        session = self._open_session()
        attributes = _span_attributes(method, url, params) if telemetry.enabled() else None
        with telemetry.client_span(method, attributes) as span:
            telemetry.inject(headers)
            try:
                async with session.request(
                    method, url, params=params, headers=headers, data=body
                ) as answer:
                    response = ServiceResponse(
                        status_code=answer.status,
                        headers=answer.headers,
                        content=await answer.read(),
                        charset=answer.charset,
                    )
            except TimeoutError as exc:
                telemetry.set_attribute(span, "error.type", type(exc).__qualname__)
                raise ServiceUnavailable(f"{self.base_url} timed out.") from exc
            except aiohttp.ClientError as exc:
                telemetry.set_attribute(span, "error.type", type(exc).__qualname__)
                raise ServiceUnavailable(f"{self.base_url} is not reachable.") from exc
            telemetry.set_attribute(span, "http.response.status_code", response.status_code)
            if response.status_code >= 500:
                telemetry.set_attribute(span, "error.type", str(response.status_code))
                telemetry.mark_failed(span, f"HTTP {response.status_code}")
        return response

    async def post(
        self,
        path: str,
        *,
        json: Any = None,
        content: bytes | str | None = None,
        params: Mapping[str, str | int] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> ServiceResponse:
        """POST to the peer."""
        return await self.request(
            "POST", path, json=json, content=content, params=params, headers=headers
        )

    async def get(
        self,
        path: str,
        *,
        params: Mapping[str, str | int] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> ServiceResponse:
        """GET from the peer."""
        return await self.request("GET", path, params=params, headers=headers)

    async def aclose(self) -> None:
        """Close the connection pool (a later call opens a new one)."""
        session, self._session = self._session, None
        if session is not None:
            await session.close()


def _span_attributes(
    method: str, url: str, params: Mapping[str, str | int] | None
) -> dict[str, Any]:
    """The HTTP client span's attributes, named as OpenTelemetry's HTTP conventions name them."""
    parsed = URL(url)
    if params:
        parsed = parsed.update_query(params)
    return {
        "http.request.method": method,
        "url.full": str(parsed),
        "server.address": parsed.host or "",
        "server.port": parsed.port or 0,
    }
