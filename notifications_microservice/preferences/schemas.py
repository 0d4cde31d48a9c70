"""Request and response bodies of `/notifications/preferences`."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from micropay_common.events import EventType


class ChannelPreferences(BaseModel):
    """Whether each channel is on for one event type."""

    email: bool
    push: bool
    webhook: bool = Field(description="The user's webhook endpoints subscribed to the event type.")
    security_notice: bool = Field(
        description="A security notice: always on, every channel (read-only)."
    )


class ChannelPreferencesUpdate(BaseModel):
    """The channels to change for one event type; a channel left out keeps its setting."""

    model_config = ConfigDict(extra="forbid")

    email: bool | None = None
    push: bool | None = None
    webhook: bool | None = None
    security_notice: bool | None = Field(
        default=None,
        description="Read-only; accepted and ignored, so a `GET` body can be sent back as it is.",
    )


PREFERENCES_EXAMPLE = {
    EventType.TRANSFER_COMPLETED: {
        "email": False,
        "push": True,
        "webhook": True,
        "security_notice": False,
    },
    EventType.PAYMENT_DISPUTE_OPENED: {
        "email": True,
        "push": True,
        "webhook": True,
        "security_notice": True,
    },
}

UPDATE_EXAMPLES = {
    "email_off_for_transfers": {
        "summary": "No emails about transfers; push and webhooks unchanged",
        "value": {EventType.TRANSFER_COMPLETED: {"email": False}},
    },
    "several": {
        "summary": "Several event types at once",
        "value": {
            EventType.PAYMENT_SUCCEEDED: {"email": True, "push": False, "webhook": True},
            EventType.PAYMENT_REFUNDED: {"push": False},
        },
    },
}
