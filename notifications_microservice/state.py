"""What the notifications app holds while it runs, besides every service's shared parts."""

from __future__ import annotations

from micropay_common.state import ServiceState
from notifications_microservice.aws import AwsClients
from notifications_microservice.devices.platforms import PushPlatforms
from notifications_microservice.settings import NotificationsSettings


class NotificationsState(ServiceState[NotificationsSettings]):
    """The shared parts plus the AWS clients and the push platforms (set at start-up)."""

    aws: AwsClients
    push_platforms: PushPlatforms
