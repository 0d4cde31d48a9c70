"""What the notifications app holds while it runs, besides every service's shared parts."""

from __future__ import annotations

from micropay_common.state import ServiceState
from notifications_microservice.aws import AwsClients
from notifications_microservice.delivery.backlog import BacklogGauges
from notifications_microservice.devices.platforms import PushPlatforms
from notifications_microservice.settings import NotificationsSettings
from notifications_microservice.webhooks.secrets import WebhookSecrets


class NotificationsState(ServiceState[NotificationsSettings]):
    """The shared parts plus the AWS clients, the push platforms, the webhook secrets and the
    delivery backlog's gauges."""

    aws: AwsClients
    push_platforms: PushPlatforms
    webhook_secrets: WebhookSecrets
    backlog: BacklogGauges
