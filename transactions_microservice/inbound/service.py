"""Event handlers: parse each event's payload and apply it through the domain services."""

from __future__ import annotations

from typing import TypeVar

from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from micropay_common.errors import UnprocessableEntity
from micropay_common.events import (
    PAYMENT_REFUNDED,
    PAYMENT_SUCCEEDED,
    USER_REGISTERED,
    EventData,
    EventEnvelope,
    PaymentRefunded,
    PaymentSucceeded,
    UserRegistered,
)
from micropay_common.inbox import Handler
from micropay_common.money import MAX_AMOUNT
from transactions_microservice.accounts import service as accounts
from transactions_microservice.funding import service as funding
from transactions_microservice.settings import TransactionsSettings

DataT = TypeVar("DataT", bound=EventData)


def parse(model: type[DataT], envelope: EventEnvelope) -> DataT:
    """The event's payload, or 422 so the producer sees (and keeps) an event it got wrong."""
    try:
        data = model.model_validate(envelope.data)
    except ValidationError as exc:
        raise UnprocessableEntity(
            f"The data of {envelope.type} event {envelope.id} is not valid: "
            + "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()),
        ) from exc
    amount = getattr(data, "amount", None)
    if isinstance(amount, int) and amount > MAX_AMOUNT:
        raise UnprocessableEntity(
            f"The amount of {envelope.type} event {envelope.id} exceeds {MAX_AMOUNT} minor units."
        )
    return data


class EventHandlers:
    """The handlers of one app; they read its settings once it has started."""

    def __init__(self) -> None:
        self._settings: TransactionsSettings | None = None

    def configure(self, settings: TransactionsSettings) -> None:
        """Give the handlers the app's settings (at start-up)."""
        self._settings = settings

    @property
    def settings(self) -> TransactionsSettings:
        """The app's settings; the app has started before any event arrives."""
        if self._settings is None:
            raise RuntimeError("event handlers used before the app started")
        return self._settings

    def routes(self) -> dict[str, Handler]:
        """Handler by event type, for events_router."""
        return {
            USER_REGISTERED: self.user_registered,
            PAYMENT_SUCCEEDED: self.payment_succeeded,
            PAYMENT_REFUNDED: self.payment_refunded,
        }

    async def user_registered(self, session: AsyncSession, envelope: EventEnvelope) -> None:
        """Record the user's email and open their wallet in the default currency."""
        data = parse(UserRegistered, envelope)
        await accounts.register_user(
            session, data.user_id, data.email, self.settings.default_currency
        )

    async def payment_succeeded(self, session: AsyncSession, envelope: EventEnvelope) -> None:
        """Credit the wallet with a top-up line, once per payment."""
        data = parse(PaymentSucceeded, envelope)
        await funding.credit_top_up(
            session,
            payment_id=data.payment_id,
            user_id=data.user_id,
            amount=data.amount,
            currency=data.currency,
        )

    async def payment_refunded(self, session: AsyncSession, envelope: EventEnvelope) -> None:
        """Debit the wallet for the refund once (through its hold when it names one)."""
        data = parse(PaymentRefunded, envelope)
        await funding.apply_refund(
            session,
            refund_id=data.refund_id,
            user_id=data.user_id,
            amount=data.amount,
            currency=data.currency,
            hold_id=data.hold_id,
        )
