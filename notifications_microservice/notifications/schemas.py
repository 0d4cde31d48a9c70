"""Response bodies of `GET /notifications`."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Channel = Literal["email", "push", "webhook"]
Status = Literal["pending", "sent", "failed"]


class NotificationRead(BaseModel):
    """One message to the caller on one channel."""

    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    channel: Channel
    event: str = Field(validation_alias="event_type", examples=["payment.succeeded"])
    subject: str
    status: Status
    attempts: int
    failure_reason: str | None = Field(
        default=None, description="Why the message was given up on (status `failed`)."
    )
    created_at: datetime
    sent_at: datetime | None
