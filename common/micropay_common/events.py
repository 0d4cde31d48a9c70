"""Events between services: the envelope on the wire and who consumes which event."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any
from uuid import UUID

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

USER_REGISTERED = "user.registered"
PAYMENT_SUCCEEDED = "payment.succeeded"
PAYMENT_FAILED = "payment.failed"
PAYMENT_REFUNDED = "payment.refunded"
TRANSFER_COMPLETED = "transfer.completed"


class EventEnvelope(BaseModel):
    """One event as the relay posts it to a consumer's `/internal/events`."""

    model_config = ConfigDict(frozen=True)

    id: UUID = Field(description="Unique per event; consumers deduplicate on it.")
    type: str = Field(min_length=1, max_length=100, examples=[PAYMENT_SUCCEEDED])
    occurred_at: AwareDatetime
    producer: str = Field(min_length=1, max_length=50, examples=["payment"])
    data: dict[str, Any]


@dataclass(frozen=True)
class EventRoute:
    """Which service emits an event type and which services receive it."""

    producer: str
    consumers: tuple[str, ...]


# DESIGN.md, "Events between services". A consumer missing here never receives the event.
EVENT_ROUTES: Mapping[str, EventRoute] = MappingProxyType(
    {
        USER_REGISTERED: EventRoute("auth", ("transactions", "notifications")),
        PAYMENT_SUCCEEDED: EventRoute("payment", ("transactions", "notifications")),
        PAYMENT_FAILED: EventRoute("payment", ("notifications",)),
        PAYMENT_REFUNDED: EventRoute("payment", ("transactions", "notifications")),
        TRANSFER_COMPLETED: EventRoute("transactions", ("notifications",)),
    }
)


class UnknownEventType(LookupError):
    """An event type that is not in EVENT_ROUTES: a programming error, never a runtime state."""


def route_of(event_type: str) -> EventRoute:
    """The route of an event type, or raise UnknownEventType."""
    try:
        return EVENT_ROUTES[event_type]
    except KeyError:
        raise UnknownEventType(
            f"{event_type!r} is not a MicroPay event; known: {', '.join(sorted(EVENT_ROUTES))}"
        ) from None


def events_consumed_by(consumer: str) -> frozenset[str]:
    """The event types routed to `consumer`."""
    return frozenset(name for name, route in EVENT_ROUTES.items() if consumer in route.consumers)
