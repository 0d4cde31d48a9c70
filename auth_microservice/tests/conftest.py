"""Fixtures of the auth service's tests: the real app on moto and PostgreSQL, and helpers."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import httpx
import pytest

from auth_microservice.main import build_app
from auth_microservice.settings import AuthSettings
from auth_microservice.tests.cognito_faults import CognitoFaults
from auth_microservice.tests.helpers import AuthClient
from micropay_testing.apps import serve, serve_http
from micropay_testing.processes import free_port
from stack.launcher import LOCAL_SIGNUP_LIMITS
from stack.postgres import connect


@pytest.fixture(scope="session")
def auth_settings(service_settings: Callable[..., Any]) -> Callable[..., AuthSettings]:
    """Settings of the auth service on the test database and moto, with overrides.

    Event consumers point at a port where nothing listens, so events stay in the outbox for
    the tests to read (and never reach a developer stack on the default ports). Every test
    client is 127.0.0.1, so the per-address sign-up limits are the local stack's; the tests of
    the limits set their own and send from addresses of their own.
    """
    nowhere = f"http://127.0.0.1:{free_port()}"

    def factory(**overrides: Any) -> AuthSettings:
        values: dict[str, Any] = {
            "auth_auto_confirm": True,
            "transactions_url": nowhere,
            "notifications_url": nowhere,
            "payment_url": nowhere,
            "outbox_poll_interval_seconds": 30,
            **{name.lower(): value for name, value in LOCAL_SIGNUP_LIMITS.items()},
        }
        values.update(overrides)
        settings: AuthSettings = service_settings("auth", settings_cls=AuthSettings, **values)
        return settings

    return factory


@pytest.fixture(scope="session")
def auth_client(auth_settings: Callable[..., AuthSettings]) -> AuthClient:
    """Run the auth app (its lifespan included) with settings overrides; yields a client."""

    @asynccontextmanager
    async def running(**overrides: Any) -> AsyncIterator[httpx.AsyncClient]:
        async with serve(build_app(auth_settings(**overrides))) as client:
            yield client

    return running


@pytest.fixture(scope="module")
async def client(auth_client: AuthClient) -> AsyncIterator[httpx.AsyncClient]:
    """The auth service with the local stack's settings (auto-confirm on)."""
    async with auth_client() as running:
        yield running


@pytest.fixture(scope="module")
async def admin_db(database: Any) -> AsyncIterator[asyncpg.Connection]:
    """A superuser connection to the test database, to look at (and break) tables."""
    conn = await connect(database.admin_url)
    yield conn
    await conn.close()


@pytest.fixture(scope="module")
async def cognito_faults(moto_endpoint: str, aws: Any) -> AsyncIterator[CognitoFaults]:
    """The fault-injecting proxy in front of moto, on its own port."""
    faults = CognitoFaults(moto_endpoint)
    async with serve_http(faults.app()) as url:
        faults.url = url
        yield faults


@pytest.fixture
def clear_faults(cognito_faults: CognitoFaults) -> Iterator[CognitoFaults]:
    """The proxy with no faults (and any code taken) before and after the test, nothing seen."""
    cognito_faults.faults.clear()
    cognito_faults.confirmation_code = None
    cognito_faults.seen.clear()
    yield cognito_faults
    cognito_faults.faults.clear()
    cognito_faults.confirmation_code = None
