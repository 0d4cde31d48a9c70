"""Push through SNS: to the micropay-sns topic (with a `user_id` attribute) and to each of the
user's enabled device endpoints. Targets already reached are remembered (`delivered_to`), so a
retry after a partial failure does not push twice to the same place.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from notifications_microservice.aws import describe, error_code
from notifications_microservice.delivery.outcomes import (
    Deferred,
    Lease,
    LeaseExpiring,
    Result,
    Retry,
    Sent,
    call_in_thread,
)
from notifications_microservice.delivery.repository import Claimed
from notifications_microservice.models import DevicePlatform
from notifications_microservice.settings import NotificationsSettings

TOPIC_TARGET = "topic"
# The endpoint is switched off (the platform rejected its token) or gone: skip it for good.
DEAD_ENDPOINT_ERRORS = frozenset({"EndpointDisabled", "NotFound"})


def platform_message(platform: str, row: Claimed) -> str:
    """An SNS message (MessageStructure=json) with the payload the device's platform expects."""
    title = str(row.payload.get("title") or row.subject)
    body = str(row.payload.get("body") or row.body_text)
    reference = {"notification_id": str(row.id), "event": row.event_type}
    if platform == DevicePlatform.FCM:
        key = "GCM"
        native: dict[str, Any] = {"notification": {"title": title, "body": body}, "data": reference}
    else:
        key = "APNS_SANDBOX" if platform == DevicePlatform.APNS_SANDBOX else "APNS"
        native = {"aps": {"alert": {"title": title, "body": body}, "sound": "default"}, **reference}
    return json.dumps({"default": body, key: json.dumps(native)})


def topic_message(row: Claimed) -> str:
    """The JSON document topic subscribers receive."""
    return json.dumps(
        {
            "notification_id": str(row.id),
            "user_id": row.user_id,
            "event": row.event_type,
            "title": row.payload.get("title") or row.subject,
            "body": row.payload.get("body") or row.body_text,
            "data": row.payload.get("data", {}),
        }
    )


class PushSender:
    """Publishes stored push notifications."""

    def __init__(self, sns: Any, settings: NotificationsSettings) -> None:
        self.sns = sns
        self.settings = settings

    async def send(self, row: Claimed, devices: Sequence[tuple[str, str]], lease: Lease) -> Result:
        """Publish to the topic and every device not reached yet; dead endpoints are skipped."""
        budget = self.settings.aws_send_budget_seconds
        delivered = list(row.delivered_to)
        disabled: list[tuple[str, str]] = []
        errors: list[str] = []
        topic_message_id: str | None = None
        targets = [(TOPIC_TARGET, None), *((arn, platform) for platform, arn in devices)]
        for target, platform in targets:
            if target in delivered:
                continue
            try:
                if platform is None:
                    response = await call_in_thread(
                        lease,
                        budget,
                        self.sns.publish,
                        TopicArn=self.settings.sns_topic_arn,
                        Message=topic_message(row),
                        MessageAttributes={
                            "user_id": {"DataType": "String", "StringValue": row.user_id},
                            "event": {"DataType": "String", "StringValue": row.event_type},
                        },
                    )
                    topic_message_id = str(response["MessageId"])
                else:
                    await call_in_thread(
                        lease,
                        budget,
                        self.sns.publish,
                        TargetArn=target,
                        Message=platform_message(platform, row),
                        MessageStructure="json",
                    )
            except LeaseExpiring:
                return Result(Deferred(tuple(delivered)), disabled_devices=tuple(disabled))
            except ClientError as exc:
                if platform is not None and error_code(exc) in DEAD_ENDPOINT_ERRORS:
                    disabled.append((target, describe(exc)))
                else:
                    errors.append(f"{target}: {describe(exc)}")
                continue
            except BotoCoreError as exc:
                errors.append(f"{target}: {describe(exc)}")
                continue
            delivered.append(target)
        if errors:
            outcome: Sent | Retry = Retry("; ".join(errors), delivered_to=tuple(delivered))
        else:
            outcome = Sent(provider_message_id=topic_message_id, delivered_to=tuple(delivered))
        return Result(outcome, disabled_devices=tuple(disabled))
