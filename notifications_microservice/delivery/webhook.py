"""Webhook deliveries signed per the Standard Webhooks spec (the `standardwebhooks` package).

2xx within the timeout is success; 410 Gone disables the endpoint; any other answer, a timeout
or a connection error is retried on the schedule, not before the `Retry-After` the receiver
asked for. Redirects are not followed. Every attempt is logged with its status, the start of
the response and its duration.

The endpoint's signing secret is opened (KMS, `webhooks/secrets.py`) just before it signs; it
is never stored in clear. KMS unavailable postpones the message without counting an attempt;
a secret that does not open for its endpoint fails the message: nothing is sent unsigned or
signed with another endpoint's secret.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import Counter, OrderedDict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

import httpx
from standardwebhooks import Webhook

from notifications_microservice.delivery.outcomes import (
    AttemptRecord,
    Deferred,
    Failed,
    Lease,
    Postponed,
    Result,
    Retry,
    Sent,
)
from notifications_microservice.delivery.repository import Claimed, EndpointSnapshot
from notifications_microservice.models import WebhookEndpointStatus
from notifications_microservice.settings import NotificationsSettings
from notifications_microservice.webhooks import service as webhooks_service
from notifications_microservice.webhooks.exceptions import (
    InvalidWebhookUrl,
    WebhookSecretsUnavailable,
)
from notifications_microservice.webhooks.secrets import SecretUnreadable, WebhookSecrets
from notifications_microservice.webhooks.urls import (
    Destination,
    Resolver,
    check_destination,
    resolve_host,
)

security_logger = logging.getLogger("micropay.security")

USER_AGENT = "MicroPay-Webhooks/1.0"
RESPONSE_READ_BYTES = 4096
RESPONSE_LOG_CHARS = 1000
RETRY_AFTER_MAX_SECONDS = 86400.0
# After KMS failed to open a signing secret: long enough not to hammer a key service that is
# recovering with every waiting message, short enough that deliveries resume soon after.
KEY_SERVICE_RETRY_SECONDS = 60.0
# Host names reached at a checked address that keep a connection pool; the least recently used
# beyond these is closed. Each keeps a few idle connections for the next sends.
PINNED_POOLS_MAX = 128
PINNED_KEEPALIVE_CONNECTIONS = 4


def retry_after_seconds(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds a `Retry-After` header asks to wait (delta-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return min(float(value), RETRY_AFTER_MAX_SECONDS)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    seconds = (when - (now or datetime.now(UTC))).total_seconds()
    return min(max(seconds, 0.0), RETRY_AFTER_MAX_SECONDS)


def signed_headers(secret: str, message_id: str, body: str, now: datetime) -> dict[str, str]:
    """`webhook-id`, `webhook-timestamp` and `webhook-signature` for one attempt."""
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": Webhook(secret).sign(message_id, now, body),
    }


class WebhookSender:
    """Posts stored webhook messages to their endpoints, keeping connections between sends.

    A destination reached by name shares one pool. A destination reached at its checked
    address (the name resolved and found public) gets a pool of its own per host name: pooled
    connections are keyed by address, and a connection (its TLS session, its SNI) made for one
    name must never carry another name's request, even on the same address.
    """

    def __init__(
        self,
        settings: NotificationsSettings,
        secrets_box: WebhookSecrets,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        resolver: Resolver = resolve_host,
    ) -> None:
        self.settings = settings
        self.secrets = secrets_box
        self.resolver = resolver
        self._transport = transport
        self.http = self._client(keepalive=None)
        self.pinned: OrderedDict[str, httpx.AsyncClient] = OrderedDict()
        self._sending: Counter[str] = Counter()

    def _client(self, keepalive: int | None = PINNED_KEEPALIVE_CONNECTIONS) -> httpx.AsyncClient:
        limits = (
            httpx.Limits()
            if keepalive is None
            else httpx.Limits(max_keepalive_connections=keepalive)
        )
        return httpx.AsyncClient(
            timeout=httpx.Timeout(self.settings.webhook_timeout_seconds),
            follow_redirects=False,
            headers={"User-Agent": USER_AGENT},
            # An HTTP(S)_PROXY would resolve names itself, past the address check.
            trust_env=False,
            transport=self._transport,
            limits=limits,
        )

    async def aclose(self) -> None:
        """Close the connection pools."""
        await self.http.aclose()
        for client in self.pinned.values():
            await client.aclose()
        self.pinned.clear()

    @asynccontextmanager
    async def _client_for(self, destination: Destination) -> AsyncIterator[httpx.AsyncClient]:
        """The pool a destination's request goes through (see the class)."""
        if destination.address is None:
            yield self.http
            return
        origin = f"{destination.url.scheme}://{destination.url.netloc.decode('ascii')}"
        client = self.pinned.pop(origin, None) or self._client()
        self.pinned[origin] = client  # the most recently used last
        self._sending[origin] += 1
        try:
            yield client
        finally:
            self._sending[origin] -= 1
            if not self._sending[origin]:
                del self._sending[origin]
            await self._close_least_recently_used()

    async def _close_least_recently_used(self) -> None:
        """Keep at most PINNED_POOLS_MAX pools; one still sending is never closed."""
        while len(self.pinned) > PINNED_POOLS_MAX:
            idle = next((origin for origin in self.pinned if origin not in self._sending), None)
            if idle is None:
                return
            await self.pinned.pop(idle).aclose()

    async def send(self, row: Claimed, endpoint: EndpointSnapshot, lease: Lease) -> Result:
        """One attempt to deliver the message; the result carries the attempt's log entry."""
        if endpoint.status != WebhookEndpointStatus.ENABLED:
            return Result(Failed(f"webhook endpoint {endpoint.status}: {endpoint.disabled_reason}"))
        timeout = self.settings.webhook_timeout_seconds
        if not lease.has_time_for(timeout):
            return Result(Deferred())
        started = time.monotonic()

        def attempt(
            *,
            succeeded: bool,
            status: int | None = None,
            body: str | None = None,
            error: str | None = None,
        ) -> AttemptRecord:
            return AttemptRecord(
                endpoint_id=endpoint.id,
                url=endpoint.url,
                succeeded=succeeded,
                status_code=status,
                response_body=body,
                error=error,
                duration_ms=round((time.monotonic() - started) * 1000),
            )

        try:
            destination = await check_destination(
                endpoint.url,
                allow_private=self.settings.webhooks_allow_private_urls,
                allowed_ports=self.settings.webhook_allowed_ports,
                resolver=self.resolver,
            )
        except InvalidWebhookUrl as exc:
            # A name may resolve elsewhere later; the schedule decides when to give up.
            return Result(Retry(exc.detail), attempt=attempt(succeeded=False, error=exc.detail))

        try:
            secret = await webhooks_service.signing_secret(
                self.secrets, endpoint.id, endpoint.sealed_secret, endpoint.legacy_secret
            )
        except WebhookSecretsUnavailable as exc:
            return Result(Postponed(exc.detail, KEY_SERVICE_RETRY_SECONDS))
        except SecretUnreadable as exc:
            security_logger.error("webhook message %s not sent: %s", row.id, exc)
            return Result(Failed("the endpoint's signing secret could not be decrypted"))
        # Opening the secret may have waited for KMS: the send must still fit in the lease.
        if not lease.has_time_for(timeout):
            return Result(Deferred())

        message_id = str(row.id)
        body = json.dumps(row.payload, separators=(",", ":"), ensure_ascii=False)
        headers = {
            "Content-Type": "application/json",
            **signed_headers(secret, message_id, body, datetime.now(UTC)),
        }
        extensions = {}
        if destination.address is not None:
            # Connect to the address that was checked, while the server sees its own name (and
            # TLS checks the certificate against it); the pool is this name's alone.
            headers["Host"] = destination.url.netloc.decode("ascii")
            if destination.url.scheme == "https":
                extensions["sni_hostname"] = destination.url.host
        try:
            async with asyncio.timeout(timeout), self._client_for(destination) as http:
                request = http.build_request(
                    "POST",
                    destination.request_url(),
                    content=body.encode(),
                    headers=headers,
                    extensions=extensions,
                )
                response = await http.send(request, stream=True)
                try:
                    head = await _read_head(response)
                finally:
                    await response.aclose()
        except (TimeoutError, httpx.TimeoutException):
            error = f"timed out after {timeout:g}s"
            return Result(Retry(error), attempt=attempt(succeeded=False, error=error))
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            return Result(Retry(error), attempt=attempt(succeeded=False, error=error))

        status = response.status_code
        logged = head[:RESPONSE_LOG_CHARS]
        if 200 <= status < 300:
            return Result(Sent(), attempt=attempt(succeeded=True, status=status, body=logged))
        if status == 410:
            reason = "the endpoint answered 410 Gone"
            return Result(
                Failed(reason),
                attempt=attempt(succeeded=False, status=status, body=logged, error=reason),
                disable_endpoint=reason,
            )
        error = f"HTTP {status}"
        if 300 <= status < 400:
            error += " (redirects are not followed)"
        return Result(
            Retry(error, retry_after=retry_after_seconds(response.headers.get("retry-after"))),
            attempt=attempt(succeeded=False, status=status, body=logged, error=error),
        )


async def _read_head(response: httpx.Response) -> str:
    """The first bytes of the body, as text; the rest is not read."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():
        chunks.append(chunk)
        size += len(chunk)
        if size >= RESPONSE_READ_BYTES:
            break
    return b"".join(chunks)[:RESPONSE_READ_BYTES].decode("utf-8", errors="replace")
