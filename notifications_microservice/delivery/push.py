"""Push through SNS: to the micropay-sns topic (with a `user_id` attribute) and to each of the
user's enabled device endpoints. Targets already reached are remembered (`delivered_to`), so a
retry after a partial failure does not push twice to the same place.

The topic messages of a batch go out ten to a call (`PublishBatch`, which takes topics only);
each device endpoint is one `Publish`, as SNS has no batch call for endpoints. Every message
takes a token from the SNS publish-rate bucket first.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from notifications_microservice.aws import describe, error_code
from notifications_microservice.delivery.aws_query import BatchEntry, SnsApi
from notifications_microservice.delivery.outcomes import (
    Calls,
    Deferred,
    Lease,
    LeaseExpiring,
    Postponed,
    Result,
    Retry,
    Sent,
)
from notifications_microservice.delivery.quotas import (
    THROTTLED_PAUSE_SECONDS,
    TokenBucket,
    is_throttled,
)
from notifications_microservice.delivery.repository import Claimed
from notifications_microservice.models import DevicePlatform
from notifications_microservice.settings import NotificationsSettings

TOPIC_TARGET = "topic"
# The endpoint is switched off (the platform rejected its token) or gone: skip it for good.
DEAD_ENDPOINT_ERRORS = frozenset({"EndpointDisabled", "NotFound"})
# PublishBatch takes at most ten messages and 256 KiB in all.
BATCH_ENTRIES = 10
BATCH_BYTES = 200_000


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


@dataclass
class _Progress:
    """One row's push so far."""

    row: Claimed
    delivered: list[str]
    disabled: list[tuple[str, str]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    topic_message_id: str | None = None
    throttled: str | None = None
    deferred: bool = False
    topic_body: str = ""

    def result(self) -> Result:
        delivered = tuple(self.delivered)
        disabled = tuple(self.disabled)
        if self.deferred:
            return Result(Deferred(delivered), disabled_devices=disabled)
        if self.throttled is not None:
            postponed = Postponed(self.throttled, THROTTLED_PAUSE_SECONDS, delivered_to=delivered)
            return Result(postponed, disabled_devices=disabled)
        if self.errors:
            return Result(
                Retry("; ".join(self.errors), delivered_to=delivered), disabled_devices=disabled
            )
        sent = Sent(provider_message_id=self.topic_message_id, delivered_to=delivered)
        return Result(sent, disabled_devices=disabled)


class PushSender:
    """Publishes stored push notifications, within the SNS publish rate."""

    def __init__(
        self, sns: SnsApi, settings: NotificationsSettings, bucket: TokenBucket, calls: Calls
    ) -> None:
        self.sns = sns
        self.bucket = bucket
        self.calls = calls
        self.topic_arn = settings.sns_topic_arn
        self.budget = settings.aws_send_budget_seconds

    async def send(self, row: Claimed, devices: Sequence[tuple[str, str]], lease: Lease) -> Result:
        """Publish one row to the topic and every device not reached yet."""
        return (await self.send_many([row], {row.user_id: devices}, lease))[0]

    async def send_many(
        self,
        rows: Sequence[Claimed],
        devices: Mapping[str, Sequence[tuple[str, str]]],
        lease: Lease,
    ) -> list[Result]:
        """Publish rows to the topic (batched) and to their users' devices; dead endpoints are
        skipped for good, a rate answer postpones the row without counting an attempt."""
        progress = [_Progress(row, list(row.delivered_to)) for row in rows]
        to_topic = [p for p in progress if TOPIC_TARGET not in p.delivered]
        for p in to_topic:
            p.topic_body = topic_message(p.row)
        await asyncio.gather(*(self._publish_batch(chunk, lease) for chunk in _chunks(to_topic)))
        await asyncio.gather(
            *(self._publish_to_devices(p, devices.get(p.row.user_id, ()), lease) for p in progress)
        )
        return [p.result() for p in progress]

    async def _publish_batch(self, chunk: list[_Progress], lease: Lease) -> None:
        entries = [
            BatchEntry(
                id=str(index),
                message=p.topic_body,
                attributes={"user_id": p.row.user_id, "event": p.row.event_type},
            )
            for index, p in enumerate(chunk)
        ]
        await self.bucket.acquire(len(entries))
        try:
            answer = await self.calls.run(
                lease,
                self.budget,
                lambda: self.sns.publish_batch(topic_arn=self.topic_arn, entries=entries),
            )
        except LeaseExpiring:
            for p in chunk:
                p.deferred = True
            return
        except ClientError as exc:
            for p in chunk:
                self._failed(p, TOPIC_TARGET, None, exc)
            return
        except BotoCoreError as exc:
            for p in chunk:
                p.errors.append(f"{TOPIC_TARGET}: {describe(exc)}")
            return
        for entry_id, message_id in answer.published:
            p = chunk[int(entry_id)]
            p.delivered.append(TOPIC_TARGET)
            p.topic_message_id = message_id
        for failure in answer.failed:
            p = chunk[int(failure.id)]
            error = {"Error": {"Code": failure.code, "Message": failure.message}}
            self._failed(p, TOPIC_TARGET, None, ClientError(error, "PublishBatch"))

    async def _publish_to_devices(
        self, p: _Progress, devices: Sequence[tuple[str, str]], lease: Lease
    ) -> None:
        for platform, target in devices:
            if p.deferred or p.throttled is not None:
                return
            if target in p.delivered:
                continue
            await self.bucket.acquire()
            try:
                message = platform_message(platform, p.row)
                publish = partial(
                    self.sns.publish, target_arn=target, message=message, structure="json"
                )
                await self.calls.run(lease, self.budget, publish)
            except LeaseExpiring:
                p.deferred = True
                return
            except ClientError as exc:
                self._failed(p, target, platform, exc)
                continue
            except BotoCoreError as exc:
                p.errors.append(f"{target}: {describe(exc)}")
                continue
            p.delivered.append(target)

    def _failed(self, p: _Progress, target: str, platform: str | None, exc: ClientError) -> None:
        if is_throttled(exc):
            self.bucket.pause(THROTTLED_PAUSE_SECONDS)
            p.throttled = f"{target}: {describe(exc)}"
        elif platform is not None and error_code(exc) in DEAD_ENDPOINT_ERRORS:
            p.disabled.append((target, describe(exc)))
        else:
            p.errors.append(f"{target}: {describe(exc)}")


def _chunks(progress: list[_Progress]) -> list[list[_Progress]]:
    """PublishBatch-sized groups: ten entries at most, well under its size limit."""
    chunks: list[list[_Progress]] = []
    size = BATCH_BYTES
    for p in progress:
        entry_size = len(p.topic_body.encode())
        if not chunks or len(chunks[-1]) == BATCH_ENTRIES or size + entry_size > BATCH_BYTES:
            chunks.append([])
            size = 0
        chunks[-1].append(p)
        size += entry_size
    return chunks
