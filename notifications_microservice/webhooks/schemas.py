"""Request and response bodies of the webhooks API."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from notifications_microservice.models import NotificationStatus, WebhookEndpointStatus

# The events a user can subscribe to: those this service consumes (micropay_common.events).
WebhookEvent = Literal[
    "user.registered",
    "payment.succeeded",
    "payment.failed",
    "payment.refunded",
    "payment.refund_failed",
    "payment.dispute_opened",
    "payment.dispute_funds_withdrawn",
    "payment.dispute_funds_reinstated",
    "payment.dispute_closed",
    "transfer.completed",
    "money_request.created",
    "money_request.received",
    "money_request.paid",
    "money_request.declined",
    "money_request.canceled",
    "money_request.expired",
    "transfer.invited",
    "transfer.invitation_canceled",
    "transfer.invitation_expired",
]
ALL_WEBHOOK_EVENTS: tuple[WebhookEvent, ...] = (
    "user.registered",
    "payment.succeeded",
    "payment.failed",
    "payment.refunded",
    "payment.refund_failed",
    "payment.dispute_opened",
    "payment.dispute_funds_withdrawn",
    "payment.dispute_funds_reinstated",
    "payment.dispute_closed",
    "transfer.completed",
    "money_request.created",
    "money_request.received",
    "money_request.paid",
    "money_request.declined",
    "money_request.canceled",
    "money_request.expired",
    "transfer.invited",
    "transfer.invitation_canceled",
    "transfer.invitation_expired",
)


class WebhookEndpointCreate(BaseModel):
    """A URL of yours to receive signed events, and which events it wants."""

    model_config = ConfigDict(extra="forbid")

    url: str = Field(
        min_length=1,
        max_length=2048,
        description="http(s) URL; it must resolve to public addresses only.",
        examples=["https://example.com/micropay/webhooks"],
    )
    events: list[WebhookEvent] = Field(
        default_factory=lambda: list(ALL_WEBHOOK_EVENTS),
        min_length=1,
        description="Event types to send; all of them when omitted.",
    )

    @field_validator("events")
    @classmethod
    def _without_repeats(cls, value: list[WebhookEvent]) -> list[WebhookEvent]:
        return list(dict.fromkeys(value))


class WebhookEndpointRead(BaseModel):
    """A webhook endpoint (its secret is shown only when it is created)."""

    # Read from a row (`event_types`) or built by name (`events`).
    model_config = ConfigDict(from_attributes=True, validate_by_name=True)

    id: uuid.UUID
    url: str
    events: list[str] = Field(validation_alias="event_types")
    status: Literal[WebhookEndpointStatus.ENABLED, WebhookEndpointStatus.DISABLED] = Field(
        description="`disabled` once the endpoint answered 410 Gone; nothing is sent then."
    )
    disabled_reason: str | None
    created_at: datetime


class WebhookEndpointCreated(WebhookEndpointRead):
    """The new endpoint with its signing secret: store it now, it is never shown again."""

    secret: str = Field(
        description="Standard Webhooks secret (`whsec_<base64>`) that signs every delivery."
    )


class WebhookDeliveryRead(BaseModel):
    """One HTTP attempt to deliver a message to the endpoint."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    notification_id: uuid.UUID = Field(description="The message; its `webhook-id` header.")
    event: str
    attempt: int = Field(description="1 for the first attempt of the message, then 2, 3, …")
    url: str
    succeeded: bool
    status_code: int | None = Field(description="HTTP status; null when no response came.")
    response_body: str | None = Field(description="The response body, truncated.")
    error: str | None = Field(description="Why the attempt failed, when it did.")
    duration_ms: int
    attempted_at: datetime


class RedeliveryRead(BaseModel):
    """A message queued for another attempt."""

    notification_id: uuid.UUID
    status: Literal[NotificationStatus.PENDING]
    next_attempt_at: datetime
