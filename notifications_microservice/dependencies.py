"""FastAPI dependencies for what the app holds: settings, AWS clients, push platforms."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends

from notifications_microservice.devices.platforms import PushPlatforms
from notifications_microservice.settings import NotificationsSettings
from notifications_microservice.state import NotificationsState

SettingsDep = Annotated[
    NotificationsSettings, Depends(NotificationsState.provide(lambda s: s.settings))
]
SnsDep = Annotated[Any, Depends(NotificationsState.provide(lambda s: s.aws.sns))]
"""The SNS client (boto3 clients are untyped)."""
PushPlatformsDep = Annotated[
    PushPlatforms, Depends(NotificationsState.provide(lambda s: s.push_platforms))
]
