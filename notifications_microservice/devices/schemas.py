"""Request and response bodies of the devices API."""

from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from notifications_microservice.models import DevicePlatform


class DeviceCreate(BaseModel):
    """A device's push token from APNs or Firebase Cloud Messaging."""

    model_config = ConfigDict(extra="forbid")

    platform: DevicePlatform = Field(description="`apns` (iOS), `apns_sandbox` (iOS dev), `fcm`.")
    # APNs tokens are hex and FCM tokens URL-safe text: visible ASCII only, so no control
    # character ever reaches SNS (whose answer botocore then cannot parse).
    token: str = Field(min_length=1, max_length=4096, pattern=r"^[\x21-\x7e]+$")


class DeviceRead(BaseModel):
    """A registered device; disabled ones (the push service gave up on them) are skipped."""

    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    platform: DevicePlatform
    enabled: bool
    disabled_reason: str | None
    created_at: datetime
