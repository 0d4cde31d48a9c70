"""Response bodies of `GET /notifications`."""

from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from notifications_microservice.models import Channel, NotificationStatus


class NotificationRead(BaseModel):
    """One message to the caller on one channel."""

    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    channel: Channel
    event: str = Field(validation_alias="event_type", examples=["payment.succeeded"])
    subject: str
    status: NotificationStatus
    attempts: int
    failure_reason: str | None = Field(
        default=None, description="Why the message was given up on (status `failed`)."
    )
    created_at: datetime
    sent_at: datetime | None
