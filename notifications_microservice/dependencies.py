"""FastAPI dependencies for what the app holds: settings, AWS clients, push platforms."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Request

from notifications_microservice.settings import NotificationsSettings


def _settings(request: Request) -> NotificationsSettings:
    settings: NotificationsSettings = request.app.state.settings
    return settings


def _app_state(request: Request) -> Any:
    return request.app.state


SettingsDep = Annotated[NotificationsSettings, Depends(_settings)]
AppStateDep = Annotated[Any, Depends(_app_state)]
