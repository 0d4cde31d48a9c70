"""Helpers of the auth tests: new users, registering, signing in, checking problems."""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

import httpx

AuthClient = Callable[..., AbstractAsyncContextManager[httpx.AsyncClient]]
"""Starts the auth app with settings overridden and yields a client of it."""

PASSWORD = "Correct-Horse-9"


def new_email(prefix: str = "user") -> str:
    """An address no other test uses."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}@example.com"


def from_ip(address: str) -> dict[str, str]:
    """What the gateway adds (the in-process client's peer, 127.0.0.1, is a trusted proxy)."""
    return {"X-Real-IP": address, "X-Forwarded-For": address}


# Addresses handed out in order: drawn at random, two tests (or one test's attacker and
# bystander) sometimes shared one, and its failures from another test throttled it.
_TEST_NET_2 = itertools.count(1)


def fresh_ip() -> str:
    """A documentation address (TEST-NET-2) that no other test of this run has used."""
    host = next(_TEST_NET_2)
    assert host < 255, "out of TEST-NET-2 addresses"
    return f"198.51.100.{host}"


async def register(
    client: httpx.AsyncClient,
    email: str,
    password: str = PASSWORD,
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    """POST /auth/register."""
    return await client.post(
        "/auth/register", json={"email": email, "password": password}, headers=headers
    )


async def login(
    client: httpx.AsyncClient,
    email: str,
    password: str = PASSWORD,
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    """POST /auth/login."""
    return await client.post(
        "/auth/login", json={"email": email, "password": password}, headers=headers
    )


async def signed_in(client: httpx.AsyncClient, email: str | None = None) -> dict[str, Any]:
    """Register a new user and sign in; returns the token response plus `email`."""
    email = email or new_email()
    assert (await register(client, email)).status_code == 201
    answer = await login(client, email)
    assert answer.status_code == 200, answer.text
    return {**answer.json(), "email": email}


def assert_problem(answer: httpx.Response, status: int, type_: str) -> dict[str, Any]:
    """The answer is a problem+json of that status and type; returns its body."""
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = answer.json()
    assert body["type"] == type_, body
    assert body["status"] == status
    return body
