"""The events between services: one definition per event, and the envelope on the wire.

Each event is a pydantic model, a subclass of `Event`, that names its type, its producer and its
consumers; its fields are the event's `data`. Producers build the model and `publish` it
(`micropay_common.outbox`); consumers receive the same model, validated, from `events_router`
(`micropay_common.inbox`). Who may send and who receives each event is read from here only.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from enum import StrEnum
from types import MappingProxyType
from typing import Any, ClassVar, Literal
from uuid import UUID, uuid4

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from micropay_common.money import MAX_AMOUNT, Amount, CurrencyCode
from micropay_common.services import ServiceName
from micropay_common.telemetry import current_traceparent

EVENTS_PATH = "/internal/events"
"""Where a consumer receives its events (never routed by the gateway)."""


class EventType(StrEnum):
    """The `type` of an event on the wire."""

    USER_REGISTERED = "user.registered"
    PAYMENT_SUCCEEDED = "payment.succeeded"
    PAYMENT_FAILED = "payment.failed"
    PAYMENT_REFUNDED = "payment.refunded"
    PAYMENT_REFUND_FAILED = "payment.refund_failed"
    PAYMENT_DISPUTE_OPENED = "payment.dispute_opened"
    PAYMENT_DISPUTE_FUNDS_WITHDRAWN = "payment.dispute_funds_withdrawn"
    PAYMENT_DISPUTE_FUNDS_REINSTATED = "payment.dispute_funds_reinstated"
    PAYMENT_DISPUTE_CLOSED = "payment.dispute_closed"
    TRANSFER_COMPLETED = "transfer.completed"
    MONEY_REQUEST_CREATED = "money_request.created"
    MONEY_REQUEST_RECEIVED = "money_request.received"
    MONEY_REQUEST_PAID = "money_request.paid"
    MONEY_REQUEST_DECLINED = "money_request.declined"
    MONEY_REQUEST_CANCELED = "money_request.canceled"
    MONEY_REQUEST_EXPIRED = "money_request.expired"
    TRANSFER_INVITED = "transfer.invited"
    TRANSFER_INVITATION_CANCELED = "transfer.invitation_canceled"
    TRANSFER_INVITATION_EXPIRED = "transfer.invitation_expired"


class Event(BaseModel):
    """Base of the events: the fields are the `data`; the class says who sends and receives it.

    Unknown fields are ignored, so a producer may add a field before its consumers read it.
    """

    model_config = ConfigDict(frozen=True, extra="ignore")

    event_type: ClassVar[EventType]
    producer: ClassVar[ServiceName]
    """The one service that emits the event (and whose service account may send it)."""
    consumers: ClassVar[tuple[ServiceName, ...]]
    """The services it is delivered to, one outbox row each; a service missing here never
    receives it."""


# DESIGN.md, "Events between services". Amounts are bounded as every request that moves money
# is (a producer cannot emit more than MAX_AMOUNT); a currency is any ISO code, because a
# payment in a currency the wallets do not list yet is credited all the same.


class UserRegistered(Event):
    """`user.registered`: a confirmed sign-up; transactions opens the wallet, notifications
    sends a welcome."""

    event_type = EventType.USER_REGISTERED
    producer = ServiceName.AUTH
    consumers = (ServiceName.TRANSACTIONS, ServiceName.NOTIFICATIONS)

    user_id: str = Field(description="Cognito `sub`.")
    email: str


class PaymentSucceeded(Event):
    """`payment.succeeded`: transactions credits the wallet, notifications sends a receipt."""

    event_type = EventType.PAYMENT_SUCCEEDED
    producer = ServiceName.PAYMENT
    consumers = (ServiceName.TRANSACTIONS, ServiceName.NOTIFICATIONS)

    payment_id: str
    user_id: str
    amount: Amount
    currency: CurrencyCode
    three_d_secure: bool = Field(
        default=False,
        description=(
            "3-D Secure authenticated the payment. Without it the money waits "
            "CARD_FUNDS_SETTLE_SECONDS before the wallet can send it on; an event from before "
            "this field counts as not authenticated."
        ),
    )


class PaymentFailed(Event):
    """`payment.failed`: notifications tells the user why."""

    event_type = EventType.PAYMENT_FAILED
    producer = ServiceName.PAYMENT
    consumers = (ServiceName.NOTIFICATIONS,)

    payment_id: str
    user_id: str
    amount: Amount
    currency: CurrencyCode
    failure_code: str | None = None
    decline_code: str | None = None


class PaymentRefunded(Event):
    """`payment.refunded`: transactions debits the wallet, notifications sends a notice.

    `hold_id` names the wallet hold the payment service captured for a refund it started; the
    transactions service then has nothing left to debit. Without it (a refund made elsewhere,
    such as Stripe's dashboard) the transactions service debits the wallet itself.
    """

    event_type = EventType.PAYMENT_REFUNDED
    producer = ServiceName.PAYMENT
    consumers = (ServiceName.TRANSACTIONS, ServiceName.NOTIFICATIONS)

    payment_id: str
    refund_id: str
    user_id: str
    amount: Amount
    currency: CurrencyCode
    hold_id: str | None = None


class PaymentRefundFailed(Event):
    """`payment.refund_failed`: Stripe failed or cancelled a refund it had accepted.

    The transactions service releases the refund's hold, or, when the wallet was already
    debited for it (`was_refunded`: `payment.refunded` was published first, Stripe having said
    succeeded), credits the wallet back with one `refund_reversal`; notifications tells the
    user the money is back in the wallet. Either event may arrive first.
    """

    event_type = EventType.PAYMENT_REFUND_FAILED
    producer = ServiceName.PAYMENT
    consumers = (ServiceName.TRANSACTIONS, ServiceName.NOTIFICATIONS)

    payment_id: str
    refund_id: str
    user_id: str
    amount: Amount
    currency: CurrencyCode
    hold_id: str | None = None
    was_refunded: bool = False
    failure_code: str | None = None


class PaymentDisputeOpened(Event):
    """`payment.dispute_opened`: the card holder disputes a top-up; notifications tells the user."""

    event_type = EventType.PAYMENT_DISPUTE_OPENED
    producer = ServiceName.PAYMENT
    consumers = (ServiceName.NOTIFICATIONS,)

    payment_id: str
    dispute_id: str
    user_id: str
    amount: Amount
    currency: CurrencyCode
    reason: str | None = None


class PaymentDisputeFundsWithdrawn(Event):
    """`payment.dispute_funds_withdrawn`: Stripe took the disputed amount back.

    The transactions service takes it from the wallet as far as its balance less holds covers
    it (card money still settling included) and records the rest as owed (the user's debt
    account), and records Stripe's `fee` on the platform's own accounts; notifications tells
    the user. Once per dispute.
    """

    event_type = EventType.PAYMENT_DISPUTE_FUNDS_WITHDRAWN
    producer = ServiceName.PAYMENT
    consumers = (ServiceName.TRANSACTIONS, ServiceName.NOTIFICATIONS)

    payment_id: str
    dispute_id: str
    user_id: str
    amount: Amount
    currency: CurrencyCode
    fee: int = Field(default=0, ge=0, le=MAX_AMOUNT)
    fee_currency: CurrencyCode | None = None


class PaymentDisputeFundsReinstated(Event):
    """`payment.dispute_funds_reinstated`: the dispute was won and Stripe gave the amount back.

    The transactions service credits it once, the user's debt paid first, and takes back any
    fee Stripe returned (`fee_returned`). It carries the withdrawal too (`fee`), so that when it
    arrives first the withdrawal is posted before it: never a lone reinstatement.
    """

    event_type = EventType.PAYMENT_DISPUTE_FUNDS_REINSTATED
    producer = ServiceName.PAYMENT
    consumers = (ServiceName.TRANSACTIONS, ServiceName.NOTIFICATIONS)

    payment_id: str
    dispute_id: str
    user_id: str
    amount: Amount
    currency: CurrencyCode
    fee: int = Field(default=0, ge=0, le=MAX_AMOUNT)
    fee_returned: int = Field(default=0, ge=0, le=MAX_AMOUNT)
    fee_currency: CurrencyCode | None = None


class PaymentDisputeClosed(Event):
    """`payment.dispute_closed`: Stripe decided a dispute (`won` or `lost`); notifications tells
    the user. The money moves with the funds events, not with this one."""

    event_type = EventType.PAYMENT_DISPUTE_CLOSED
    producer = ServiceName.PAYMENT
    consumers = (ServiceName.NOTIFICATIONS,)

    payment_id: str
    dispute_id: str
    user_id: str
    amount: Amount
    currency: CurrencyCode
    status: Literal["won", "lost"]


class TransferCompleted(Event):
    """`transfer.completed`: notifications tells both sides (one event for both)."""

    event_type = EventType.TRANSFER_COMPLETED
    producer = ServiceName.TRANSACTIONS
    consumers = (ServiceName.NOTIFICATIONS,)

    transfer_id: str
    from_user_id: str
    from_email: str
    to_user_id: str
    to_email: str
    amount: Amount
    currency: CurrencyCode
    description: str | None = None


class MoneyRequestData(BaseModel):
    """What every money request event carries: the request as it stands after the change."""

    request_id: str
    requester_id: str
    requester_email: str
    payer_id: str | None = Field(
        default=None, description="Empty while the payer's email names no account yet."
    )
    payer_email: str
    amount: Amount
    currency: CurrencyCode
    note: str | None = None


class MoneyRequestCreated(Event, MoneyRequestData):
    """`money_request.created`: notifications tells the requester their request is sent (the
    same notice whether or not the email has an account)."""

    event_type = EventType.MONEY_REQUEST_CREATED
    producer = ServiceName.TRANSACTIONS
    consumers = (ServiceName.NOTIFICATIONS,)


class MoneyRequestReceived(Event, MoneyRequestData):
    """`money_request.received`: an open request reached its payer's account (at once, or when
    the email signed up); notifications tells the payer."""

    event_type = EventType.MONEY_REQUEST_RECEIVED
    producer = ServiceName.TRANSACTIONS
    consumers = (ServiceName.NOTIFICATIONS,)


class MoneyRequestPaid(Event, MoneyRequestData):
    """`money_request.paid`: the payer paid it with `transfer_id`; notifications tells both."""

    event_type = EventType.MONEY_REQUEST_PAID
    producer = ServiceName.TRANSACTIONS
    consumers = (ServiceName.NOTIFICATIONS,)

    transfer_id: str


class MoneyRequestDeclined(Event, MoneyRequestData):
    """`money_request.declined`: the payer refused it; notifications tells both."""

    event_type = EventType.MONEY_REQUEST_DECLINED
    producer = ServiceName.TRANSACTIONS
    consumers = (ServiceName.NOTIFICATIONS,)


class MoneyRequestCanceled(Event, MoneyRequestData):
    """`money_request.canceled`: the requester withdrew it; notifications tells both (the payer
    only if the request had reached an account)."""

    event_type = EventType.MONEY_REQUEST_CANCELED
    producer = ServiceName.TRANSACTIONS
    consumers = (ServiceName.NOTIFICATIONS,)


class MoneyRequestExpired(Event, MoneyRequestData):
    """`money_request.expired`: nobody answered it in time; notifications tells both (the
    payer only if the request had reached an account)."""

    event_type = EventType.MONEY_REQUEST_EXPIRED
    producer = ServiceName.TRANSACTIONS
    consumers = (ServiceName.NOTIFICATIONS,)


class InvitationData(BaseModel):
    """What every invitation event carries: a transfer to an email without an account."""

    invitation_id: str = Field(description="Also the id of the transfer it becomes.")
    from_user_id: str
    from_email: str
    to_email: str
    amount: Amount
    currency: CurrencyCode
    description: str | None = None
    expires_at: AwareDatetime


class TransferInvited(Event, InvitationData):
    """`transfer.invited`: money waits for an email to sign up; notifications tells the sender
    and sends the invitation to the address. Its completion is the usual `transfer.completed`."""

    event_type = EventType.TRANSFER_INVITED
    producer = ServiceName.TRANSACTIONS
    consumers = (ServiceName.NOTIFICATIONS,)


class TransferInvitationCanceled(Event, InvitationData):
    """`transfer.invitation_canceled`: the sender took it back, the hold is released;
    notifications tells the sender."""

    event_type = EventType.TRANSFER_INVITATION_CANCELED
    producer = ServiceName.TRANSACTIONS
    consumers = (ServiceName.NOTIFICATIONS,)


class TransferInvitationExpired(Event, InvitationData):
    """`transfer.invitation_expired`: nobody signed up in time, the hold is released;
    notifications tells the sender."""

    event_type = EventType.TRANSFER_INVITATION_EXPIRED
    producer = ServiceName.TRANSACTIONS
    consumers = (ServiceName.NOTIFICATIONS,)


EVENT_MODELS: Mapping[EventType, type[Event]] = MappingProxyType(
    {
        model.event_type: model
        for model in (
            UserRegistered,
            PaymentSucceeded,
            PaymentFailed,
            PaymentRefunded,
            PaymentRefundFailed,
            PaymentDisputeOpened,
            PaymentDisputeFundsWithdrawn,
            PaymentDisputeFundsReinstated,
            PaymentDisputeClosed,
            TransferCompleted,
            MoneyRequestCreated,
            MoneyRequestReceived,
            MoneyRequestPaid,
            MoneyRequestDeclined,
            MoneyRequestCanceled,
            MoneyRequestExpired,
            TransferInvited,
            TransferInvitationCanceled,
            TransferInvitationExpired,
        )
    }
)
"""The model of each event type (tests hold it to `EventType` and to `Event`'s subclasses)."""


class UnknownEventType(LookupError):
    """A type that is not a MicroPay event."""


def event_model(event_type: EventType | str) -> type[Event]:
    """The model of an event type, or raise UnknownEventType."""
    try:
        return EVENT_MODELS[EventType(event_type)]
    except (ValueError, KeyError):
        known = ", ".join(sorted(EVENT_MODELS))
        raise UnknownEventType(f"{event_type!r} is not a MicroPay event; known: {known}") from None


def producer_of(event_type: EventType | str) -> ServiceName:
    """The service that emits `event_type`."""
    return event_model(event_type).producer


def consumers_of(event_type: EventType | str) -> tuple[ServiceName, ...]:
    """The services `event_type` is delivered to."""
    return event_model(event_type).consumers


def events_produced_by(service: ServiceName) -> frozenset[EventType]:
    """The event types `service` emits (and may send)."""
    return frozenset(t for t, model in EVENT_MODELS.items() if model.producer == service)


def events_consumed_by(service: ServiceName) -> frozenset[EventType]:
    """The event types delivered to `service`."""
    return frozenset(t for t, model in EVENT_MODELS.items() if service in model.consumers)


class EventEnvelope(BaseModel):
    """One event as the relay posts it to a consumer's `/internal/events`.

    `type` and `producer` stay plain strings on the wire: a consumer records an event type it
    does not know (yet) instead of refusing it, so producers and consumers upgrade separately.
    """

    model_config = ConfigDict(frozen=True)

    id: UUID = Field(description="Unique per event; consumers deduplicate on it.")
    type: str = Field(min_length=1, max_length=100, examples=[EventType.PAYMENT_SUCCEEDED])
    occurred_at: AwareDatetime
    producer: str = Field(min_length=1, max_length=50, examples=[ServiceName.PAYMENT])
    data: dict[str, Any]
    traceparent: str | None = Field(
        default=None,
        max_length=55,
        description=(
            "W3C trace context of the transaction that wrote the event, when its producer"
            " traces; the delivery continues that trace. Absent otherwise."
        ),
        examples=["00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"],
        # Absent, not null, from the envelopes of a producer that does not trace.
        exclude_if=lambda value: value is None,
    )

    @classmethod
    def of(cls, event: Event, *, event_id: UUID | None = None) -> EventEnvelope:
        """The envelope of `event`, stamped now; type and producer are the event's own, the
        trace the current one (if tracing)."""
        return cls(
            id=event_id or uuid4(),
            type=event.event_type,
            occurred_at=datetime.now(UTC),
            producer=event.producer,
            data=event.model_dump(mode="json"),
            traceparent=current_traceparent(),
        )
