"""Each registered service starts from its own module with its own settings, role and schema."""

from __future__ import annotations

import importlib
from typing import Any

import pytest
from sqlalchemy import text

from micropay_common.services import SERVICES, ServiceName
from micropay_testing.apps import serve

# What the registry (micropay_common.services) does not say: the title and required settings.
EXPECTED: dict[str, dict[str, Any]] = {
    "auth": {
        "title": "MicroPay Auth",
        "extra": {},
    },
    "payment": {
        "title": "MicroPay Payments",
        "extra": {"stripe_api_key": "sk_test_local", "stripe_webhook_secret": "whsec_test"},
    },
    "transactions": {
        "title": "MicroPay Transactions",
        "extra": {},
    },
    "notifications": {
        "title": "MicroPay Notifications",
        "extra": {
            "ses_sender": "no-reply@micropay.local",
            "sns_topic_arn": "arn:aws:sns:us-east-1:123456789012:micropay-sns",
        },
    },
}


@pytest.fixture(params=[str(name) for name in SERVICES])
def service(request, service_settings, monkeypatch) -> tuple[str, Any]:
    """A service's module-level app, its environment set as a deployment would set it."""
    name = request.param
    package = SERVICES[ServiceName(name)].package
    settings_module = importlib.import_module(f"{package}.settings")
    settings_cls = next(
        value
        for attribute, value in vars(settings_module).items()
        if attribute.endswith("Settings") and attribute != "ServiceSettings"
    )
    settings = service_settings(name, settings_cls=settings_cls, **EXPECTED[name]["extra"])
    for field, value in settings.model_dump().items():
        if value is not None:
            monkeypatch.setenv(field.upper(), str(value))
    return name, importlib.import_module(f"{package}.main")


async def test_starts_ready_on_its_own_role_and_schema(service):
    name, main = service
    async with serve(main.app) as client:
        ready = await client.get("/health/ready")
        async with main.app.state.sessionmaker() as session:
            user = await session.scalar(text("SELECT current_user"))
            path = await session.scalar(text("SHOW search_path"))
    assert ready.status_code == 200
    assert user == SERVICES[ServiceName(name)].role
    assert path == SERVICES[ServiceName(name)].schema


async def test_describes_itself_in_openapi_and_docs(service):
    name, main = service
    async with serve(main.app) as client:
        spec = (await client.get("/openapi.json")).json()
        docs = await client.get("/docs")
    assert spec["info"]["title"] == EXPECTED[name]["title"]
    assert spec["info"]["version"] == main.VERSION
    assert spec["info"]["description"]
    assert {tag["name"] for tag in spec["tags"]} >= {"health", "internal"}
    assert "/health/ready" in spec["paths"]
    assert docs.status_code == 200
    assert "swagger" in docs.text.lower()
