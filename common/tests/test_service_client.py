"""Service accounts: Cognito login cached and renewed; peer calls carry token and request id."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse

from micropay_common.errors import ServiceUnavailable
from micropay_common.http import ServiceClient
from micropay_common.request_context import request_id_var
from micropay_common.security import JwksCache, ServiceCaller, TokenVerifier
from micropay_common.service_auth import ServiceTokenProvider
from micropay_common.services import ServiceName
from micropay_common.settings import ServiceSettings
from micropay_testing.apps import app_with, serve_http
from micropay_testing.processes import free_port


@pytest.fixture
def provider(service_settings) -> ServiceTokenProvider:
    return ServiceTokenProvider.from_settings(service_settings("payment"))


async def test_logs_in_once_for_many_concurrent_callers(provider, aws):
    tokens = await asyncio.gather(*(provider.token() for _ in range(20)))
    assert len(set(tokens)) == 1
    assert provider.login_count == 1
    verifier = TokenVerifier(
        issuer=aws.issuer, client_id=aws.client_id, jwks=JwksCache(aws.jwks_url, 60)
    )
    caller = await verifier.verify(tokens[0])
    await verifier.aclose()
    assert caller.username == "svc-payment"
    assert caller.in_group("services")
    assert caller.service == ServiceName.PAYMENT


async def test_renews_before_expiry_and_after_invalidation(provider):
    first = await provider.token()
    # A margin longer than the token's life makes the cached token count as about to expire.
    provider.refresh_margin_seconds = 4000
    renewed = await provider.token()
    assert provider.login_count == 2
    assert renewed != first
    provider.refresh_margin_seconds = 300
    assert await provider.token() == renewed
    provider.invalidate()
    assert await provider.token() != renewed
    assert provider.login_count == 3


async def test_wrong_password_is_service_unavailable(service_settings):
    settings = service_settings("payment", service_account_password="Wrong-password-1")
    provider = ServiceTokenProvider.from_settings(settings)
    with pytest.raises(ServiceUnavailable):
        await provider.token()


def receiver_app(settings: ServiceSettings, calls: list[dict[str, Any]]) -> FastAPI:
    router = APIRouter()

    @router.post("/internal/echo")
    async def echo(request: Request, caller: ServiceCaller) -> dict[str, Any]:
        calls.append({"caller": caller.username, "request_id": request.headers.get("x-request-id")})
        return {"ok": True}

    @router.post("/internal/slow")
    async def slow(caller: ServiceCaller) -> dict[str, Any]:
        await asyncio.sleep(2)
        return {"ok": True}

    return app_with(settings, "transactions", [router])


async def test_peer_calls_carry_service_token_and_request_id(service_settings, provider):
    calls: list[dict[str, Any]] = []
    async with serve_http(receiver_app(service_settings("transactions"), calls)) as url:
        client = ServiceClient(url, provider, timeout=5)
        token = request_id_var.set("req-forwarded-1")
        try:
            response = await client.post("/internal/echo", json={})
        finally:
            request_id_var.reset(token)
        await client.aclose()
    assert response.status_code == 200
    assert calls == [{"caller": "svc-payment", "request_id": "req-forwarded-1"}]


async def test_a_rejected_token_is_renewed_once(service_settings, provider):
    calls: list[dict[str, Any]] = []
    async with serve_http(receiver_app(service_settings("transactions"), calls)) as url:
        await provider.token()
        assert provider._cached is not None
        provider._cached.access_token = "expired-or-revoked"  # as if Cognito had revoked it
        client = ServiceClient(url, provider, timeout=5)
        response = await client.post("/internal/echo", json={})
        await client.aclose()
    assert response.status_code == 200
    assert provider.login_count == 2
    assert len(calls) == 1


async def test_unreachable_and_slow_peers_are_service_unavailable(service_settings, provider):
    down = ServiceClient(f"http://127.0.0.1:{free_port()}", provider, timeout=1)
    with pytest.raises(ServiceUnavailable, match="not reachable"):
        await down.post("/internal/echo", json={})
    await down.aclose()
    calls: list[dict[str, Any]] = []
    async with serve_http(receiver_app(service_settings("transactions"), calls)) as url:
        slow = ServiceClient(url, provider, timeout=0.5)
        with pytest.raises(ServiceUnavailable, match="timed out"):
            await slow.post("/internal/slow", json={})
        await slow.aclose()


async def test_peer_errors_are_returned_to_the_caller(service_settings, provider):
    async def teapot(scope: Any, receive: Any, send: Any) -> None:
        await JSONResponse({"status": 418}, status_code=418)(scope, receive, send)

    async with serve_http(teapot) as url:
        client = ServiceClient(url, provider, timeout=2)
        response = await client.get("/anything")
        await client.aclose()
    assert response.status_code == 418


def test_refresh_margin_comes_from_the_settings(service_settings):
    settings = service_settings("payment", service_token_refresh_margin_seconds=3590)
    assert ServiceTokenProvider.from_settings(settings).refresh_margin_seconds == 3590
    default = ServiceTokenProvider.from_settings(service_settings("payment"))
    assert default.refresh_margin_seconds == 300
