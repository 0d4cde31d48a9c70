"""Fixtures of the transactions tests: the real app on the test database, users, events."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from micropay_testing.apps import serve
from micropay_testing.cognito import CognitoUser
from micropay_testing.events import event_envelope
from transactions_microservice.main import create_app
from transactions_microservice.settings import TransactionsSettings
from transactions_microservice.tests.helpers import Member


@pytest.fixture(scope="session")
def tx_settings(idle_transactions_settings: TransactionsSettings) -> TransactionsSettings:
    """Settings of the service under test; its peers point at a port nothing listens on."""
    return idle_transactions_settings


@pytest.fixture(scope="session")
def tx_app(tx_settings: TransactionsSettings) -> FastAPI:
    """The production app factory with the test settings."""
    return create_app(tx_settings)


@pytest.fixture(scope="session")
async def client(tx_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """An in-process client of the started app."""
    async with serve(tx_app) as client:
        yield client


@pytest.fixture(scope="session")
def service_headers(service_account_headers: dict[str, dict[str, str]]) -> dict[str, str]:
    """The payment service's account, the one caller of the holds API."""
    return service_account_headers["payment"]


Deliver = Callable[..., Awaitable[httpx.Response]]


@pytest.fixture(scope="session")
def deliver(
    client: httpx.AsyncClient, producer_headers: Callable[[str], dict[str, str]]
) -> Deliver:
    """Post an event to /internal/events as its producer (a fresh id unless given an envelope)."""

    async def post(
        event_type: str | None = None,
        data: dict[str, Any] | None = None,
        *,
        event: dict[str, Any] | None = None,
    ) -> httpx.Response:
        if event is None:
            assert event_type is not None
            assert data is not None
            event = event_envelope(event_type, data)
        headers = producer_headers(event["type"])
        return await client.post("/internal/events", json=event, headers=headers)

    return post


Register = Callable[..., Awaitable[Member]]


@pytest.fixture(scope="session")
def register(make_user: Callable[..., CognitoUser], deliver: Deliver) -> Register:
    """A new Cognito user, registered with the service through `user.registered`."""

    async def factory() -> Member:
        member = Member(make_user())
        response = await deliver("user.registered", {"user_id": member.id, "email": member.email})
        assert response.status_code == 200, response.text
        return member

    return factory


TopUp = Callable[..., Awaitable[str]]


@pytest.fixture(scope="session")
def top_up(deliver: Deliver) -> TopUp:
    """Credit a wallet through `payment.succeeded`; returns the payment id."""

    async def credit(member: Member, amount: int, currency: str = "USD") -> str:
        payment_id = f"pay_{uuid.uuid4().hex[:16]}"
        response = await deliver(
            "payment.succeeded",
            {
                "payment_id": payment_id,
                "user_id": member.id,
                "amount": amount,
                "currency": currency,
            },
        )
        assert response.status_code == 200, response.text
        assert response.json() == {"status": "applied"}
        return payment_id

    return credit
