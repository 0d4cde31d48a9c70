"""The real auth service behind gateway/nginx.conf in a real nginx: the walkthrough of a user."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from auth_microservice.main import build_app
from auth_microservice.tests.helpers import PASSWORD, new_email
from micropay_testing.apps import serve_http
from micropay_testing.gateway import requires_nginx
from micropay_testing.http import bearer
from micropay_testing.processes import free_port
from stack.tests.upstreams import EchoUpstream

pytestmark = [pytest.mark.nginx, requires_nginx]


@dataclass
class Gateway:
    """A client of the gateway, and the payment stand-in behind it."""

    http: httpx.AsyncClient
    payment: EchoUpstream


@pytest.fixture(scope="module")
async def gateway(
    auth_settings: Callable[..., Any],
    start_gateway: Callable[[Mapping[str, int]], int],
) -> AsyncIterator[Gateway]:
    """nginx in front of the auth app (uvicorn, this event loop) and an echoing payment service."""
    payment = EchoUpstream("payment").start()
    try:
        async with serve_http(build_app(auth_settings())) as auth_url:
            port = start_gateway(
                {
                    "auth": int(auth_url.rsplit(":", 1)[1]),
                    "payment": payment.port,
                    "transactions": free_port(),
                    "notifications": free_port(),
                }
            )
            # An async client: nginx calls back into the app served by this very event loop.
            async with httpx.AsyncClient(
                base_url=f"http://127.0.0.1:{port}", timeout=15, trust_env=False
            ) as http:
                yield Gateway(http, payment)
    finally:
        payment.stop()


def assert_gateway_problem(answer: httpx.Response, status: int) -> dict[str, Any]:
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = answer.json()
    assert body["status"] == status
    return body


async def test_register_login_me_logout_then_everything_is_refused(gateway):
    http, email = gateway.http, new_email("walk")
    credentials = {"email": email, "password": PASSWORD}
    registered = await http.post("/auth/register", json=credentials)
    assert registered.status_code == 201, registered.text
    user_id = registered.json()["user_id"]
    tokens = (await http.post("/auth/login", json=credentials)).json()
    access = bearer(tokens["access_token"])

    me = await http.get("/auth/me", headers=access)
    assert me.status_code == 200
    assert me.json() == {"user_id": user_id, "email": email, "groups": []}

    gateway.payment.received.clear()
    passed = await http.get("/payments", headers={**access, "X-User-Id": "forged"})
    assert passed.status_code == 200
    [seen] = gateway.payment.received
    assert seen.header("X-User-Id") == user_id
    assert seen.header("X-User-Email") == email
    assert seen.header("X-User-Groups") is None or seen.header("X-User-Groups") == ""

    assert (await http.post("/auth/logout", headers=access)).status_code == 204

    assert_gateway_problem(await http.get("/auth/me", headers=access), 401)
    gateway.payment.received.clear()
    assert_gateway_problem(await http.get("/payments", headers=access), 401)
    assert gateway.payment.received == []
    refused = await http.post("/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert assert_gateway_problem(refused, 401)["type"] == "invalid_refresh_token"


async def test_a_bad_token_is_401_at_the_gateway(gateway):
    answer = await gateway.http.get("/payments", headers=bearer("not-a-token"))
    assert assert_gateway_problem(answer, 401)["type"] == "invalid_token"
    assert answer.headers["www-authenticate"] == "Bearer"


async def test_wrong_passwords_throttle_to_429_through_the_gateway(gateway):
    http, email = gateway.http, new_email("guess")
    assert (
        await http.post("/auth/register", json={"email": email, "password": PASSWORD})
    ).status_code == 201
    wrong = {"email": email, "password": "Wrong-Password-1"}
    # Three failures for the email (the default) before its next sign-in must wait.
    statuses = [(await http.post("/auth/login", json=wrong)).status_code for _ in range(3)]
    assert statuses == [401] * 3
    throttled = await http.post("/auth/login", json=wrong)
    assert assert_gateway_problem(throttled, 429)["type"] == "too_many_login_attempts"
    assert int(throttled.headers["retry-after"]) > 0
