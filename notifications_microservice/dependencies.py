"""FastAPI dependencies for what the app holds: settings, AWS clients, push platforms, secrets."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends

from notifications_microservice.aws import AwsClients
from notifications_microservice.devices.platforms import PushPlatforms
from notifications_microservice.settings import NotificationsSettings
from notifications_microservice.state import NotificationsState
from notifications_microservice.webhooks.secrets import WebhookSecrets

SettingsDep = Annotated[
    NotificationsSettings, Depends(NotificationsState.provide(lambda s: s.settings))
]
AwsDep = Annotated[AwsClients, Depends(NotificationsState.provide(lambda s: s.aws))]
PushPlatformsDep = Annotated[
    PushPlatforms, Depends(NotificationsState.provide(lambda s: s.push_platforms))
]
WebhookSecretsDep = Annotated[
    WebhookSecrets, Depends(NotificationsState.provide(lambda s: s.webhook_secrets))
]
