"""Event handlers: each event becomes notification records in its inbox transaction."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from sqlalchemy.ext.asyncio import AsyncSession

from micropay_common.events import (
    InvitationData,
    MoneyRequestCanceled,
    MoneyRequestCreated,
    MoneyRequestData,
    MoneyRequestDeclined,
    MoneyRequestExpired,
    MoneyRequestPaid,
    MoneyRequestReceived,
    PaymentDisputeClosed,
    PaymentDisputeFundsReinstated,
    PaymentDisputeFundsWithdrawn,
    PaymentDisputeOpened,
    PaymentFailed,
    PaymentRefunded,
    PaymentRefundFailed,
    PaymentSucceeded,
    TransferCompleted,
    TransferInvitationCanceled,
    TransferInvitationExpired,
    TransferInvited,
    UserRegistered,
)
from micropay_common.inbox import EventHandler, EventMeta, events_router, on
from micropay_common.money import format_amount
from micropay_common.services import ServiceName
from notifications_microservice.notifications import service
from notifications_microservice.notifications.service import Occurrence

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

# Words for Stripe's `failure_reason` of a refund (and our `canceled`).
REFUND_FAILURE_REASONS = {
    "lost_or_stolen_card": "the card was reported lost or stolen",
    "expired_or_canceled_card": "the card has expired or was cancelled",
    "charge_for_pending_refund_disputed": "the payment is disputed",
    "insufficient_funds": "the payment provider could not cover it",
    "declined": "the card's bank declined it",
    "merchant_request": "it was cancelled",
    "canceled": "it was cancelled",
}


def _occurrence(meta: EventMeta) -> Occurrence:
    return Occurrence(meta.id, meta.type, meta.occurred_at)


def failure_reason(failure_code: str | None, decline_code: str | None) -> str | None:
    """A reason for a failed top-up in words, from the most specific code there is."""
    code = decline_code or failure_code
    if not code:
        return None
    return FAILURE_REASONS.get(code, code.replace("_", " "))


async def on_user_registered(session: AsyncSession, event: UserRegistered, meta: EventMeta) -> None:
    """Remember the email (releasing any email that waited for it) and send a welcome."""
    await service.remember_email(session, event.user_id, event.email)
    await service.notify(
        session,
        _occurrence(meta),
        user_id=event.user_id,
        email=event.email,
        kind="welcome",
        context={"email": event.email},
        webhook_data={"user_id": event.user_id, "email": event.email},
    )


async def on_payment_succeeded(
    session: AsyncSession, event: PaymentSucceeded, meta: EventMeta
) -> None:
    """A receipt for a top-up."""
    email = await service.lock_user(session, event.user_id)
    await service.notify(
        session,
        _occurrence(meta),
        user_id=event.user_id,
        email=email,
        kind="payment_succeeded",
        context={
            "amount": format_amount(event.amount, event.currency),
            "payment_id": event.payment_id,
        },
        webhook_data={
            "payment_id": event.payment_id,
            "amount": event.amount,
            "currency": event.currency,
        },
    )


async def on_payment_failed(session: AsyncSession, event: PaymentFailed, meta: EventMeta) -> None:
    """A notice that a top-up failed, with the reason in words."""
    email = await service.lock_user(session, event.user_id)
    await service.notify(
        session,
        _occurrence(meta),
        user_id=event.user_id,
        email=email,
        kind="payment_failed",
        context={
            "amount": format_amount(event.amount, event.currency),
            "payment_id": event.payment_id,
            "reason": failure_reason(event.failure_code, event.decline_code),
        },
        webhook_data={
            "payment_id": event.payment_id,
            "amount": event.amount,
            "currency": event.currency,
            "failure_code": event.failure_code,
            "decline_code": event.decline_code,
        },
    )


async def on_payment_refunded(
    session: AsyncSession, event: PaymentRefunded, meta: EventMeta
) -> None:
    """A refund notice."""
    email = await service.lock_user(session, event.user_id)
    await service.notify(
        session,
        _occurrence(meta),
        user_id=event.user_id,
        email=email,
        kind="payment_refunded",
        context={
            "amount": format_amount(event.amount, event.currency),
            "payment_id": event.payment_id,
            "refund_id": event.refund_id,
        },
        webhook_data={
            "payment_id": event.payment_id,
            "refund_id": event.refund_id,
            "amount": event.amount,
            "currency": event.currency,
        },
    )


async def on_payment_refund_failed(
    session: AsyncSession, event: PaymentRefundFailed, meta: EventMeta
) -> None:
    """A notice that a refund failed and its money is in the wallet again."""
    email = await service.lock_user(session, event.user_id)
    code = event.failure_code
    await service.notify(
        session,
        _occurrence(meta),
        user_id=event.user_id,
        email=email,
        kind="payment_refund_failed",
        context={
            "amount": format_amount(event.amount, event.currency),
            "payment_id": event.payment_id,
            "refund_id": event.refund_id,
            "reason": REFUND_FAILURE_REASONS.get(code, code.replace("_", " ")) if code else None,
        },
        webhook_data={
            "payment_id": event.payment_id,
            "refund_id": event.refund_id,
            "amount": event.amount,
            "currency": event.currency,
            "failure_code": event.failure_code,
        },
    )


DisputeEvent = (
    PaymentDisputeOpened
    | PaymentDisputeFundsWithdrawn
    | PaymentDisputeFundsReinstated
    | PaymentDisputeClosed
)


async def _notify_dispute(
    session: AsyncSession, event: DisputeEvent, meta: EventMeta, kind: str, **extra: Any
) -> None:
    email = await service.lock_user(session, event.user_id)
    await service.notify(
        session,
        _occurrence(meta),
        user_id=event.user_id,
        email=email,
        kind=kind,
        context={
            "amount": format_amount(event.amount, event.currency),
            "payment_id": event.payment_id,
            "dispute_id": event.dispute_id,
            **extra,
        },
        webhook_data={
            "payment_id": event.payment_id,
            "dispute_id": event.dispute_id,
            "amount": event.amount,
            "currency": event.currency,
            **extra,
        },
    )


async def on_payment_dispute_opened(
    session: AsyncSession, event: PaymentDisputeOpened, meta: EventMeta
) -> None:
    """A notice that the card holder disputes a top-up."""
    await _notify_dispute(session, event, meta, "payment_dispute_opened", reason=event.reason)


async def on_payment_dispute_funds_withdrawn(
    session: AsyncSession, event: PaymentDisputeFundsWithdrawn, meta: EventMeta
) -> None:
    """A notice that the disputed amount left the wallet (what it could not cover is owed)."""
    await _notify_dispute(session, event, meta, "payment_dispute_funds_withdrawn")


async def on_payment_dispute_funds_reinstated(
    session: AsyncSession, event: PaymentDisputeFundsReinstated, meta: EventMeta
) -> None:
    """A notice that a won dispute's amount is back (the debt it left paid first)."""
    await _notify_dispute(session, event, meta, "payment_dispute_funds_reinstated")


async def on_payment_dispute_closed(
    session: AsyncSession, event: PaymentDisputeClosed, meta: EventMeta
) -> None:
    """A notice of how a dispute ended."""
    await _notify_dispute(session, event, meta, "payment_dispute_closed", status=event.status)


async def on_transfer_completed(
    session: AsyncSession, event: TransferCompleted, meta: EventMeta
) -> None:
    """A 'sent' notice to the sender and a 'received' notice to the recipient."""
    # Both users' rows are locked in one order, so two transfers in opposite directions
    # handled at once cannot deadlock.
    sides = {event.from_user_id: event.from_email, event.to_user_id: event.to_email}
    emails = {
        user_id: await service.learn_email(session, user_id, sides[user_id])
        for user_id in sorted(sides)
    }
    amount = format_amount(event.amount, event.currency)
    for user_id, kind, direction, counterparty in (
        (event.from_user_id, "transfer_sent", "sent", event.to_email),
        (event.to_user_id, "transfer_received", "received", event.from_email),
    ):
        await service.notify(
            session,
            _occurrence(meta),
            user_id=user_id,
            email=emails[user_id],
            kind=kind,
            context={
                "amount": amount,
                "counterparty_email": counterparty,
                "description": event.description,
                "transfer_id": event.transfer_id,
            },
            webhook_data={
                "transfer_id": event.transfer_id,
                "direction": direction,
                "amount": event.amount,
                "currency": event.currency,
                "counterparty_email": counterparty,
                "description": event.description,
            },
        )


async def _notify_money_request(
    session: AsyncSession,
    event: MoneyRequestData,
    meta: EventMeta,
    kind: str,
    *,
    requester: bool = True,
    payer: bool = True,
    transfer_id: str | None = None,
) -> None:
    """Tell the chosen sides of a request about a change; the payer only once the request has
    reached an account (an email nobody signed up with gets nothing)."""
    sides: dict[str, tuple[str, bool, str]] = {}
    if requester:
        sides[event.requester_id] = (event.requester_email, False, event.payer_email)
    if payer and event.payer_id is not None:
        sides[event.payer_id] = (event.payer_email, True, event.requester_email)
    amount = format_amount(event.amount, event.currency)
    # Users locked in one order, as for transfers, so two events at once cannot deadlock.
    for user_id in sorted(sides):
        own_email, as_payer, counterparty = sides[user_id]
        email = await service.learn_email(session, user_id, own_email)
        await service.notify(
            session,
            _occurrence(meta),
            user_id=user_id,
            email=email,
            kind=kind,
            context={
                "amount": amount,
                "counterparty_email": counterparty,
                "note": event.note,
                "request_id": event.request_id,
                "transfer_id": transfer_id,
                "as_payer": as_payer,
            },
            webhook_data={
                "request_id": event.request_id,
                "role": "payer" if as_payer else "requester",
                "amount": event.amount,
                "currency": event.currency,
                "counterparty_email": counterparty,
                "note": event.note,
                "transfer_id": transfer_id,
            },
        )


async def on_money_request_created(
    session: AsyncSession, event: MoneyRequestCreated, meta: EventMeta
) -> None:
    """A note to the requester that their request is on its way."""
    await _notify_money_request(session, event, meta, "money_request_sent", payer=False)


async def on_money_request_received(
    session: AsyncSession, event: MoneyRequestReceived, meta: EventMeta
) -> None:
    """A notice to the payer that someone asks them for money."""
    await _notify_money_request(session, event, meta, "money_request_received", requester=False)


async def on_money_request_paid(
    session: AsyncSession, event: MoneyRequestPaid, meta: EventMeta
) -> None:
    """Both sides hear that the request was paid, with the transfer."""
    await _notify_money_request(
        session, event, meta, "money_request_paid", transfer_id=event.transfer_id
    )


async def on_money_request_declined(
    session: AsyncSession, event: MoneyRequestDeclined, meta: EventMeta
) -> None:
    """Both sides hear that the payer declined."""
    await _notify_money_request(session, event, meta, "money_request_declined")


async def on_money_request_canceled(
    session: AsyncSession, event: MoneyRequestCanceled, meta: EventMeta
) -> None:
    """Both sides hear that the requester cancelled."""
    await _notify_money_request(session, event, meta, "money_request_canceled")


async def on_money_request_expired(
    session: AsyncSession, event: MoneyRequestExpired, meta: EventMeta
) -> None:
    """Both sides hear that nobody answered in time."""
    await _notify_money_request(session, event, meta, "money_request_expired")


async def _notify_sender(
    session: AsyncSession, event: InvitationData, meta: EventMeta, kind: str
) -> None:
    email = await service.learn_email(session, event.from_user_id, event.from_email)
    amount = format_amount(event.amount, event.currency)
    await service.notify(
        session,
        _occurrence(meta),
        user_id=event.from_user_id,
        email=email,
        kind=kind,
        context={
            "amount": amount,
            "counterparty_email": event.to_email,
            "description": event.description,
            "transfer_id": event.invitation_id,
            "expires_at": event.expires_at.strftime("%Y-%m-%d %H:%M UTC"),
        },
        webhook_data={
            "transfer_id": event.invitation_id,
            "amount": event.amount,
            "currency": event.currency,
            "counterparty_email": event.to_email,
            "description": event.description,
            "expires_at": event.expires_at.isoformat(),
        },
    )


async def on_transfer_invited(
    session: AsyncSession, event: TransferInvited, meta: EventMeta
) -> None:
    """The sender hears the money waits; the address gets the invitation to sign up."""
    await _notify_sender(session, event, meta, "transfer_invitation_sent")
    await service.notify_address(
        session,
        _occurrence(meta),
        email=event.to_email,
        kind="transfer_invitation",
        context={
            "amount": format_amount(event.amount, event.currency),
            "counterparty_email": event.from_email,
            "description": event.description,
            "expires_at": event.expires_at.strftime("%Y-%m-%d %H:%M UTC"),
        },
    )


async def on_transfer_invitation_canceled(
    session: AsyncSession, event: TransferInvitationCanceled, meta: EventMeta
) -> None:
    """The sender hears the held money is back in the wallet."""
    await _notify_sender(session, event, meta, "transfer_invitation_canceled")


async def on_transfer_invitation_expired(
    session: AsyncSession, event: TransferInvitationExpired, meta: EventMeta
) -> None:
    """The sender hears nobody signed up in time and the money is back in the wallet."""
    await _notify_sender(session, event, meta, "transfer_invitation_expired")


HANDLERS: list[EventHandler[Any]] = [
    on(UserRegistered, on_user_registered),
    on(PaymentSucceeded, on_payment_succeeded),
    on(PaymentFailed, on_payment_failed),
    on(PaymentRefunded, on_payment_refunded),
    on(PaymentRefundFailed, on_payment_refund_failed),
    on(PaymentDisputeOpened, on_payment_dispute_opened),
    on(PaymentDisputeFundsWithdrawn, on_payment_dispute_funds_withdrawn),
    on(PaymentDisputeFundsReinstated, on_payment_dispute_funds_reinstated),
    on(PaymentDisputeClosed, on_payment_dispute_closed),
    on(TransferCompleted, on_transfer_completed),
    on(MoneyRequestCreated, on_money_request_created),
    on(MoneyRequestReceived, on_money_request_received),
    on(MoneyRequestPaid, on_money_request_paid),
    on(MoneyRequestDeclined, on_money_request_declined),
    on(MoneyRequestCanceled, on_money_request_canceled),
    on(MoneyRequestExpired, on_money_request_expired),
    on(TransferInvited, on_transfer_invited),
    on(TransferInvitationCanceled, on_transfer_invitation_canceled),
    on(TransferInvitationExpired, on_transfer_invitation_expired),
]


def build_events_router() -> APIRouter:
    """`POST /internal/events` applying every event this service consumes."""
    return events_router(HANDLERS, consumer=ServiceName.NOTIFICATIONS)
