"""Service accounts: Cognito login cached and renewed; peer calls carry token and request id."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import sys
from typing import Any

import pytest
from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse, Response

from micropay_common import telemetry
from micropay_common.errors import ServiceUnavailable, UpstreamError
from micropay_common.http import ServiceClient, ServiceResponse
from micropay_common.request_context import request_id_var
from micropay_common.security import JwksCache, ServiceCaller, TokenVerifier
from micropay_common.service_auth import ServiceTokenProvider
from micropay_common.services import ServiceName
from micropay_common.settings import ServiceSettings
from micropay_testing.apps import app_with, serve_http, silent_server
from micropay_testing.otlp import otlp_receiver, render_tree
from micropay_testing.processes import ROOT, free_port


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


def receiver_app(
    settings: ServiceSettings,
    calls: list[dict[str, Any]],
    requests: list[Request] | None = None,
) -> FastAPI:
    """A peer with the production factory's token check; `requests` gets every echo request."""
    router = APIRouter()

    @router.post("/internal/echo")
    async def echo(request: Request, caller: ServiceCaller) -> dict[str, Any]:
        calls.append({"caller": caller.username, "request_id": request.headers.get("x-request-id")})
        if requests is not None:
            requests.append(request)
        return {"ok": True}

    @router.api_route("/internal/mirror", methods=["GET", "POST"])
    async def mirror(request: Request, caller: ServiceCaller) -> Response:
        """Answers what it received, with a header and a charset of its own."""
        body = await request.body()
        seen = {
            "method": request.method,
            "query": dict(request.query_params),
            "content_type": request.headers.get("content-type"),
            "body": body.decode(),
            "note": request.headers.get("x-note"),
        }
        return Response(
            json.dumps(seen, ensure_ascii=False).encode("utf-8"),
            media_type="application/json",
            headers={"X-Answered-By": "mirror"},
        )

    @router.post("/internal/slow")
    async def slow(caller: ServiceCaller) -> dict[str, Any]:
        await asyncio.sleep(2)
        return {"ok": True}

    @router.post("/internal/unavailable")
    async def unavailable(caller: ServiceCaller) -> Response:
        return JSONResponse({"status": 503}, status_code=503)

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


async def test_the_answer_is_read_whole_into_a_response_of_our_own(service_settings, provider):
    calls: list[dict[str, Any]] = []
    async with serve_http(receiver_app(service_settings("transactions"), calls)) as url:
        client = ServiceClient(url, provider, timeout=5)
        posted = await client.post("/internal/mirror", json={"amount": 1200, "memo": "café"})
        got = await client.get("internal/mirror", params={"user_id": "u-1", "page": 2})
        raw = await client.request(
            "POST",
            "/internal/mirror",
            content=b"plain bytes",
            headers={"Content-Type": "text/plain", "X-Note": "given by the caller"},
        )
        await client.aclose()

    assert isinstance(posted, ServiceResponse)
    assert posted.status_code == 200
    assert posted.is_success
    assert posted.headers["x-answered-by"] == posted.headers["X-Answered-By"] == "mirror"
    assert posted.headers["content-type"] == "application/json"
    assert posted.json() == {
        "method": "POST",
        "query": {},
        "content_type": "application/json",
        "body": '{"amount":1200,"memo":"café"}',
        "note": None,
    }
    assert json.loads(posted.content) == posted.json()
    assert posted.text == posted.content.decode("utf-8")
    assert "café" in posted.text
    with pytest.raises(dataclasses.FrozenInstanceError):
        posted.status_code = 500  # type: ignore[misc]

    assert got.json()["method"] == "GET"
    assert got.json()["query"] == {"user_id": "u-1", "page": "2"}
    assert got.json()["body"] == ""

    assert raw.json()["content_type"] == "text/plain"
    assert raw.json()["body"] == "plain bytes"
    assert raw.json()["note"] == "given by the caller"


async def test_an_answer_that_is_not_json_is_a_value_error(provider):
    async def plain(scope: Any, receive: Any, send: Any) -> None:
        await Response("not json", media_type="text/plain; charset=latin-1", status_code=500)(
            scope, receive, send
        )

    async with serve_http(plain) as url:
        client = ServiceClient(url, provider, timeout=2)
        response = await client.post("/internal/events", json={})
        await client.aclose()
    assert response.status_code == 500
    assert not response.is_success
    assert response.charset == "latin-1"
    assert response.text == "not json"
    # A ValueError, as the callers catch it.
    with pytest.raises(json.JSONDecodeError):
        response.json()


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


async def test_a_second_refusal_is_an_upstream_error(provider):
    seen: list[str] = []

    async def refuses(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        seen.append(dict(scope["headers"])[b"authorization"].decode())
        await JSONResponse({"status": 401}, status_code=401)(scope, receive, send)

    await provider.token()
    logins = provider.login_count
    async with serve_http(refuses) as url:
        client = ServiceClient(url, provider, timeout=2)
        with pytest.raises(UpstreamError, match="refused this service's credentials"):
            await client.post("/internal/events", json={})
        await client.aclose()
    # Sent twice, the second time with a token got after the first refusal.
    assert len(seen) == 2
    assert seen[0] != seen[1]
    assert provider.login_count == logins + 1


async def test_unreachable_and_slow_peers_are_service_unavailable(service_settings, provider):
    address = f"http://127.0.0.1:{free_port()}"
    down = ServiceClient(address, provider, timeout=1)
    with pytest.raises(ServiceUnavailable, match="not reachable") as refused:
        await down.post("/internal/echo", json={})
    assert refused.value.detail == f"{address} is not reachable."
    await down.aclose()
    calls: list[dict[str, Any]] = []
    async with serve_http(receiver_app(service_settings("transactions"), calls)) as url:
        slow = ServiceClient(url, provider, timeout=0.5)
        with pytest.raises(ServiceUnavailable, match="timed out") as late:
            await slow.post("/internal/slow", json={})
        assert late.value.detail == f"{url} timed out."
        # The pool still serves the next call.
        assert (await slow.post("/internal/echo", json={})).status_code == 200
        await slow.aclose()
    # A peer that accepts the connection and never answers, like one stuck on a lock.
    async with silent_server() as url:
        stuck = ServiceClient(url, provider, timeout=0.5)
        with pytest.raises(ServiceUnavailable, match="timed out"):
            await stuck.get("/internal/limits/top-ups", params={"user_id": "u-1"})
        await stuck.aclose()


async def test_calls_share_a_kept_alive_connection(service_settings, provider):
    calls: list[dict[str, Any]] = []
    requests: list[Request] = []
    async with serve_http(receiver_app(service_settings("transactions"), calls, requests)) as url:
        client = ServiceClient(url, provider, timeout=5)
        for _ in range(5):
            assert (await client.post("/internal/echo", json={})).status_code == 200
        in_turn = {request.client for request in requests}
        requests.clear()
        answers = await asyncio.gather(*(client.post("/internal/echo", json={}) for _ in range(4)))
        assert all(answer.status_code == 200 for answer in answers)
        together = {request.client for request in requests}
        requests.clear()
        await client.aclose()
        assert (await client.post("/internal/echo", json={})).status_code == 200
        reopened = {request.client for request in requests}
        await client.aclose()
    # The server sees a connection as one client address and port.
    assert len(in_turn) == 1
    # Calls in flight together take connections of their own, the first one among them.
    assert 1 < len(together) <= 4
    assert in_turn <= together
    # Closed, the client opens a new pool on its next call.
    assert len(reopened) == 1
    assert not reopened & together


async def test_without_tracing_no_trace_context_is_sent(service_settings, provider):
    assert not telemetry.enabled()
    calls: list[dict[str, Any]] = []
    requests: list[Request] = []
    async with serve_http(receiver_app(service_settings("transactions"), calls, requests)) as url:
        client = ServiceClient(url, provider, timeout=5)
        with telemetry.continued(None, "work"):
            await client.post("/internal/echo", json={})
        await client.aclose()
    (request,) = requests
    assert "traceparent" not in request.headers
    assert "tracestate" not in request.headers


TRACED_CALLS = """
import asyncio, json, sys

from micropay_common import telemetry
from micropay_common.errors import ServiceUnavailable
from micropay_common.http import ServiceClient
from micropay_common.service_auth import ServiceTokenProvider
from micropay_common.settings import ServiceSettings


async def main(peer: str, closed: str) -> None:
    settings = ServiceSettings.model_validate_json(sys.stdin.read())
    assert telemetry.configure("payment")
    tokens = ServiceTokenProvider.from_settings(settings)
    client = ServiceClient(peer, tokens, timeout=5)
    down = ServiceClient(closed, tokens, timeout=1)
    with telemetry.continued(None, "relay work"):
        trace_id, work_span = telemetry.current_ids()
        assert (await client.post("/internal/echo", json={})).status_code == 200
        assert (await client.post("/internal/unavailable", json={})).status_code == 503
        try:
            await down.post("/internal/echo", json={})
        except ServiceUnavailable:
            pass
    await client.aclose()
    await down.aclose()
    telemetry.shutdown()
    print(json.dumps({"trace_id": trace_id, "work_span": work_span}))


asyncio.run(main(sys.argv[1], sys.argv[2]))
"""


async def test_with_tracing_each_call_is_a_client_span_whose_context_is_sent(
    service_settings, provider
):
    """Tracing on sets up the process's global tracer provider: the calls run in a process of
    their own, exporting to a receiver here (as tests/e2e/test_tracing.py does for services)."""
    calls: list[dict[str, Any]] = []
    requests: list[Request] = []
    closed = f"http://127.0.0.1:{free_port()}"
    receiver_port = free_port()
    env = {
        **os.environ,
        "PYTHONPATH": f"{ROOT / 'common'}{os.pathsep}{ROOT}",
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{receiver_port}",
    }
    with otlp_receiver(receiver_port) as received:
        async with serve_http(
            receiver_app(service_settings("transactions"), calls, requests)
        ) as url:
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-c",
                TRACED_CALLS,
                url,
                closed,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env=env,
            )
            settings = service_settings("payment").model_dump_json().encode()
            out, err = await asyncio.wait_for(process.communicate(settings), timeout=60)
        assert process.returncode == 0, err.decode()
        ids = json.loads(out.decode().strip().splitlines()[-1])
        # The process flushed its spans before it printed.
        spans = received.trace(ids["trace_id"])

    tree = render_tree(spans)
    posts = [span for span in spans if span.name == "POST"]
    assert len(posts) == 3, tree
    assert all(span.kind == "CLIENT" for span in posts), tree
    assert all(span.parent_span_id == ids["work_span"] for span in posts), tree
    by_url = {span.attributes["url.full"]: span for span in posts}
    echo = by_url[f"{url}/internal/echo"]
    assert echo.attributes["http.request.method"] == "POST"
    assert echo.attributes["http.response.status_code"] == 200
    assert not echo.error
    unavailable = by_url[f"{url}/internal/unavailable"]
    assert unavailable.attributes["http.response.status_code"] == 503
    assert unavailable.error
    down = by_url[f"{closed}/internal/echo"]
    assert "http.response.status_code" not in down.attributes
    assert down.error

    # The peer received the context of the call's own span.
    (request,) = requests
    version, trace_id, parent_id, flags = request.headers["traceparent"].split("-")
    assert (version, trace_id, parent_id) == ("00", ids["trace_id"], echo.span_id)
    assert int(flags, 16) & 1  # sampled


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
