"""HTTP client for calls to other MicroPay services: timeouts, request id, service token."""

from __future__ import annotations

from typing import Any

import httpx

from micropay_common.errors import ServiceUnavailable, UpstreamError
from micropay_common.request_context import REQUEST_ID_HEADER, current_request_id
from micropay_common.service_auth import ServiceTokenProvider


class ServiceClient:
    """Calls one peer service as this service's account; retries once after a 401."""

    def __init__(
        self,
        base_url: str,
        tokens: ServiceTokenProvider,
        *,
        timeout: float = 10.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.tokens = tokens
        self._http = httpx.AsyncClient(
            base_url=base_url,
            timeout=httpx.Timeout(timeout, connect=min(timeout, 3.0)),
            transport=transport,
        )

    async def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """Send a request with the service token and the current request id."""
        for attempt in (1, 2):
            headers = dict(kwargs.pop("headers", None) or {})
            headers["Authorization"] = f"Bearer {await self.tokens.token()}"
            request_id = current_request_id()
            if request_id:
                headers[REQUEST_ID_HEADER] = request_id
            try:
                response = await self._http.request(method, path, headers=headers, **kwargs)
            except httpx.TimeoutException as exc:
                raise ServiceUnavailable(f"{self._http.base_url} timed out.") from exc
            except httpx.TransportError as exc:
                raise ServiceUnavailable(f"{self._http.base_url} is not reachable.") from exc
            if response.status_code == 401 and attempt == 1:
                self.tokens.invalidate()
                kwargs["headers"] = headers
                continue
            return response
        raise UpstreamError("The peer service refused this service's credentials.")

    async def post(self, path: str, **kwargs: Any) -> httpx.Response:
        """POST to the peer."""
        return await self.request("POST", path, **kwargs)

    async def get(self, path: str, **kwargs: Any) -> httpx.Response:
        """GET from the peer."""
        return await self.request("GET", path, **kwargs)

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._http.aclose()
