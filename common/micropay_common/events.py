"""Events between services: the envelope on the wire and who consumes which event."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any
from uuid import UUID, uuid4

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

    @classmethod
    def new(
        cls,
        event_type: str,
        data: Mapping[str, Any],
        *,
        producer: str | None = None,
        event_id: UUID | None = None,
    ) -> EventEnvelope:
        """An envelope stamped now; the producer is the event type's route's unless given."""
        return cls(
            id=event_id or uuid4(),
            type=event_type,
            occurred_at=datetime.now(UTC),
            producer=producer or route_of(event_type).producer,
            data=dict(data),
        )


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


# --- The `data` of each event: the contract between producer and consumers -------------------


class EventData(BaseModel):
    """Base of event payloads: unknown fields are kept out, so producers can add fields later."""

    model_config = ConfigDict(frozen=True, extra="ignore")


class UserRegistered(EventData):
    """`user.registered` (auth → transactions, notifications)."""

    user_id: str = Field(description="Cognito `sub`.")
    email: str


class PaymentSucceeded(EventData):
    """`payment.succeeded` (payment → transactions, notifications): credit the wallet."""

    payment_id: str
    user_id: str
    amount: int = Field(gt=0, description="Minor units.")
    currency: str = Field(pattern=r"^[A-Z]{3}$")


class PaymentFailed(EventData):
    """`payment.failed` (payment → notifications)."""

    payment_id: str
    user_id: str
    amount: int = Field(gt=0)
    currency: str = Field(pattern=r"^[A-Z]{3}$")
    failure_code: str | None = None
    decline_code: str | None = None


class PaymentRefunded(EventData):
    """`payment.refunded` (payment → transactions, notifications).

    `hold_id` names the wallet hold the payment service captured for a refund it started; the
    transactions service then has nothing left to debit. Without it (a refund made elsewhere,
    such as Stripe's dashboard) the transactions service debits the wallet itself.
    """

    payment_id: str
    refund_id: str
    user_id: str
    amount: int = Field(gt=0)
    currency: str = Field(pattern=r"^[A-Z]{3}$")
    hold_id: str | None = None


class TransferCompleted(EventData):
    """`transfer.completed` (transactions → notifications): one event for both sides."""

    transfer_id: str
    from_user_id: str
    from_email: str
    to_user_id: str
    to_email: str
    amount: int = Field(gt=0)
    currency: str = Field(pattern=r"^[A-Z]{3}$")
    description: str | None = None


EVENT_DATA: Mapping[str, type[EventData]] = MappingProxyType(
    {
        USER_REGISTERED: UserRegistered,
        PAYMENT_SUCCEEDED: PaymentSucceeded,
        PAYMENT_FAILED: PaymentFailed,
        PAYMENT_REFUNDED: PaymentRefunded,
        TRANSFER_COMPLETED: TransferCompleted,
    }
)
