"""The notifications service starts with its own settings, role and schema, and describes itself."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi import FastAPI
from sqlalchemy import text

from conftest import serve
from notifications_microservice import main
from notifications_microservice.settings import NotificationsSettings

EXTRA: dict[str, Any] = {
    "ses_sender": "no-reply@micropay.local",
    "sns_topic_arn": "arn:aws:sns:us-east-1:123456789012:micropay-sns",
}


@pytest.fixture
def app(service_settings, monkeypatch) -> FastAPI:
    settings = service_settings("notifications", settings_cls=NotificationsSettings, **EXTRA)
    # The module-level app reads its settings from the environment at start-up.
    for field, value in settings.model_dump().items():
        if value is not None:
            monkeypatch.setenv(field.upper(), str(value))
    return main.app


async def test_starts_ready_on_its_own_role_and_schema(app):
    async with serve(app) as client:
        ready = await client.get("/health/ready")
        assert ready.status_code == 200
        async with app.state.sessionmaker() as session:
            user = await session.scalar(text("SELECT current_user"))
            path = await session.scalar(text("SHOW search_path"))
    assert user == "notifications_service"
    assert path == "notifications"


async def test_describes_itself_in_openapi_and_docs(app):
    async with serve(app) as client:
        spec = (await client.get("/openapi.json")).json()
        docs = await client.get("/docs")
    assert spec["info"]["title"] == "MicroPay Notifications"
    assert spec["info"]["version"] == main.VERSION
    assert spec["info"]["description"]
    assert {tag["name"] for tag in spec["tags"]} >= {"health", "internal"}
    assert "/health/ready" in spec["paths"]
    assert docs.status_code == 200
    assert "swagger" in docs.text.lower()
