"""Event handlers: each event becomes notification records in its inbox transaction."""

from __future__ import annotations

from typing import TypeVar

from fastapi import APIRouter
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from micropay_common.events import (
    PAYMENT_FAILED,
    PAYMENT_REFUNDED,
    PAYMENT_SUCCEEDED,
    TRANSFER_COMPLETED,
    USER_REGISTERED,
    EventData,
    EventEnvelope,
    PaymentFailed,
    PaymentRefunded,
    PaymentSucceeded,
    TransferCompleted,
    UserRegistered,
)
from micropay_common.inbox import Handler, events_router
from micropay_common.money import format_amount
from notifications_microservice.notifications import service
from notifications_microservice.notifications.exceptions import MalformedEvent
from notifications_microservice.notifications.service import Occurrence

DataT = TypeVar("DataT", bound=EventData)

# Words for the codes Stripe gives a failed payment; any other code is shown as it is.
FAILURE_REASONS = {
    "card_declined": "your card was declined",
    "insufficient_funds": "your card has insufficient funds",
    "expired_card": "your card has expired",
    "incorrect_cvc": "the card's security code is incorrect",
    "incorrect_number": "the card number is incorrect",
    "processing_error": "the card could not be processed",
    "authentication_required": "your bank asked for authentication that was not completed",
    "lost_card": "your card was declined",
    "stolen_card": "your card was declined",
    "fraudulent": "your card was declined",
}


def _data(envelope: EventEnvelope, model: type[DataT]) -> DataT:
    try:
        return model.model_validate(envelope.data)
    except ValidationError as exc:
        raise MalformedEvent(
            f"{envelope.type} {envelope.id} does not match its contract: {exc.errors()[0]['msg']}"
        ) from exc


def _occurrence(envelope: EventEnvelope) -> Occurrence:
    return Occurrence(envelope.id, envelope.type, envelope.occurred_at)


def failure_reason(failure_code: str | None, decline_code: str | None) -> str | None:
    """A reason for a failed top-up in words, from the most specific code there is."""
    code = decline_code or failure_code
    if not code:
        return None
    return FAILURE_REASONS.get(code, code.replace("_", " "))


async def on_user_registered(session: AsyncSession, envelope: EventEnvelope) -> None:
    """Remember the email (releasing any email that waited for it) and send a welcome."""
    data = _data(envelope, UserRegistered)
    await service.remember_email(session, data.user_id, data.email)
    await service.notify(
        session,
        _occurrence(envelope),
        user_id=data.user_id,
        email=data.email,
        kind="welcome",
        context={"email": data.email},
        webhook_data={"user_id": data.user_id, "email": data.email},
    )


async def on_payment_succeeded(session: AsyncSession, envelope: EventEnvelope) -> None:
    """A receipt for a top-up."""
    data = _data(envelope, PaymentSucceeded)
    email = await service.lock_user(session, data.user_id)
    await service.notify(
        session,
        _occurrence(envelope),
        user_id=data.user_id,
        email=email,
        kind="payment_succeeded",
        context={
            "amount": format_amount(data.amount, data.currency),
            "payment_id": data.payment_id,
        },
        webhook_data={
            "payment_id": data.payment_id,
            "amount": data.amount,
            "currency": data.currency,
        },
    )


async def on_payment_failed(session: AsyncSession, envelope: EventEnvelope) -> None:
    """A notice that a top-up failed, with the reason in words."""
    data = _data(envelope, PaymentFailed)
    email = await service.lock_user(session, data.user_id)
    await service.notify(
        session,
        _occurrence(envelope),
        user_id=data.user_id,
        email=email,
        kind="payment_failed",
        context={
            "amount": format_amount(data.amount, data.currency),
            "payment_id": data.payment_id,
            "reason": failure_reason(data.failure_code, data.decline_code),
        },
        webhook_data={
            "payment_id": data.payment_id,
            "amount": data.amount,
            "currency": data.currency,
            "failure_code": data.failure_code,
            "decline_code": data.decline_code,
        },
    )


async def on_payment_refunded(session: AsyncSession, envelope: EventEnvelope) -> None:
    """A refund notice."""
    data = _data(envelope, PaymentRefunded)
    email = await service.lock_user(session, data.user_id)
    await service.notify(
        session,
        _occurrence(envelope),
        user_id=data.user_id,
        email=email,
        kind="payment_refunded",
        context={
            "amount": format_amount(data.amount, data.currency),
            "payment_id": data.payment_id,
            "refund_id": data.refund_id,
        },
        webhook_data={
            "payment_id": data.payment_id,
            "refund_id": data.refund_id,
            "amount": data.amount,
            "currency": data.currency,
        },
    )


async def on_transfer_completed(session: AsyncSession, envelope: EventEnvelope) -> None:
    """A 'sent' notice to the sender and a 'received' notice to the recipient."""
    data = _data(envelope, TransferCompleted)
    # Both users' rows are locked in one order, so two transfers in opposite directions
    # handled at once cannot deadlock.
    sides = {data.from_user_id: data.from_email, data.to_user_id: data.to_email}
    emails = {
        user_id: await service.learn_email(session, user_id, sides[user_id])
        for user_id in sorted(sides)
    }
    amount = format_amount(data.amount, data.currency)
    for user_id, kind, direction, counterparty in (
        (data.from_user_id, "transfer_sent", "sent", data.to_email),
        (data.to_user_id, "transfer_received", "received", data.from_email),
    ):
        await service.notify(
            session,
            _occurrence(envelope),
            user_id=user_id,
            email=emails[user_id],
            kind=kind,
            context={
                "amount": amount,
                "counterparty_email": counterparty,
                "description": data.description,
                "transfer_id": data.transfer_id,
            },
            webhook_data={
                "transfer_id": data.transfer_id,
                "direction": direction,
                "amount": data.amount,
                "currency": data.currency,
                "counterparty_email": counterparty,
                "description": data.description,
            },
        )


HANDLERS: dict[str, Handler] = {
    USER_REGISTERED: on_user_registered,
    PAYMENT_SUCCEEDED: on_payment_succeeded,
    PAYMENT_FAILED: on_payment_failed,
    PAYMENT_REFUNDED: on_payment_refunded,
    TRANSFER_COMPLETED: on_transfer_completed,
}


def build_events_router() -> APIRouter:
    """`POST /internal/events` applying every event this service consumes."""
    return events_router(HANDLERS, consumer="notifications")
