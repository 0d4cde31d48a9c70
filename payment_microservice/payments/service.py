"""Rules of payments: limits, how Stripe's answers settle a payment, and its events.

Every function takes the session first, flushes and never commits. Settling is guarded by the
payment's status in the UPDATE itself and every event id is derived from the payment, so the
request, a webhook and the reconciler may all report the same outcome, in any order, and the
wallet is still credited exactly once.
"""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import literal, or_
from sqlalchemy.ext.asyncio import AsyncSession

from micropay_common.errors import Forbidden, ProblemError
from micropay_common.events import EventType, PaymentFailed, PaymentSucceeded
from micropay_common.limits import TopUpAllowance, TopUpAllowances
from micropay_common.money import utc_day_bounds
from micropay_common.outbox import publish
from micropay_common.pagination import InvalidCursor
from micropay_common.security import AuthenticatedUser
from payment_microservice.models import Dispute, Payment, PaymentProvider, PaymentStatus
from payment_microservice.payments import repository
from payment_microservice.payments.exceptions import (
    AmountOutOfRange,
    CardDeclined,
    LimitExceeded,
    PaymentNotFound,
    ProviderNotOffered,
    UnsupportedCurrency,
)
from payment_microservice.payments.exceptions import (
    PaymentFailed as PaymentFailedProblem,
)
from payment_microservice.payments.schemas import (
    DisputeSummary,
    PaymentCreate,
    PaymentList,
    PaymentRead,
)
from payment_microservice.paypal_api import OrderState
from payment_microservice.settings import PaymentSettings
from payment_microservice.stripe_api import IntentState, StripeRefused

logger = logging.getLogger("micropay.payment.payments")

EVENT_NAMESPACE = uuid.UUID("6f1c1f55-3c8e-4b7e-9a55-0d8c3f0d7a10")
ADMINS = "admins"

# PaymentIntent statuses after which nothing more will happen without the customer.
_FAILED_INTENT_STATUSES = ("requires_payment_method", "canceled")


def event_id(event_type: EventType, subject_id: uuid.UUID) -> uuid.UUID:
    """The one event id of `event_type` about a payment or refund, whoever publishes it."""
    return uuid.uuid5(EVENT_NAMESPACE, f"{event_type}:{subject_id}")


def stripe_idempotency_key(payment_id: uuid.UUID) -> str:
    """Stripe's idempotency key for confirming a payment: every retry sends the same one."""
    return f"micropay-payment-{payment_id}"


def paypal_request_id(payment_id: uuid.UUID, step: str) -> str:
    """PayPal's request id for one step of a payment (`order`, `capture`): retries send it."""
    return f"micropay-{step}-{payment_id}"


# PayPal order statuses that still wait for the buyer, and capture statuses that mean the money
# is ours (a capture refunded since was still paid first).
PAYPAL_AWAITING_BUYER = ("CREATED", "PAYER_ACTION_REQUIRED", "SAVED")
_PAYPAL_CAPTURED = ("COMPLETED", "PARTIALLY_REFUNDED", "REFUNDED")
_PAYPAL_CAPTURE_FAILED = ("DECLINED", "FAILED")


def check_amount(settings: PaymentSettings, body: PaymentCreate) -> None:
    """Refuse currencies the wallet does not hold and amounts outside the configured limits."""
    if body.provider == PaymentProvider.PAYPAL and not settings.paypal_enabled:
        raise ProviderNotOffered(
            "PayPal top-ups are not offered here; pay by card.", provider=body.provider
        )
    limits = settings.amount_limits.get(body.currency)
    if limits is None:
        raise UnsupportedCurrency(
            f"{body.currency} is not supported; use one of "
            f"{', '.join(settings.supported_currencies)}.",
            supported=settings.supported_currencies,
        )
    if not limits.min <= body.amount <= limits.max:
        raise AmountOutOfRange(
            f"A top-up in {body.currency} must be between {limits.min} and {limits.max} "
            "minor units.",
            min=limits.min,
            max=limits.max,
            currency=body.currency,
        )


async def check_daily_top_ups(
    session: AsyncSession, settings: PaymentSettings, user_id: str, body: PaymentCreate
) -> None:
    """Refuse a top-up that would take the user's day above its limit (LimitExceeded).

    Called in the transaction that inserts the payment: the user's top-ups are locked until it
    commits, so two concurrent requests are counted one after the other and cannot overshoot.
    """
    limit = settings.top_up_daily_limits.get(body.currency)
    if limit is None:
        return
    await repository.lock_user_top_ups(session, user_id)
    day_start, resets_at = utc_day_bounds(datetime.now(UTC))
    topped_up = (await repository.top_ups_since(session, user_id, day_start)).get(body.currency, 0)
    if topped_up + body.amount > limit:
        raise LimitExceeded(
            f"This top-up would take what you topped up today in {body.currency} above your "
            "daily limit.",
            limit_kind="top_up_per_day",
            limit=limit,
            remaining=max(limit - topped_up, 0),
            currency=body.currency,
            resets_at=resets_at,
        )


async def limits(session: AsyncSession, settings: PaymentSettings, user_id: str) -> TopUpAllowances:
    """The user's top-up allowances today, per currency with a daily limit.

    A read without the per-user lock: a top-up in flight shows once its transaction commits.
    """
    day_start, resets_at = utc_day_bounds(datetime.now(UTC))
    topped_up = await repository.top_ups_since(session, user_id, day_start)
    return TopUpAllowances(
        top_ups=[
            TopUpAllowance(
                currency=currency,
                per_day=limit,
                topped_up_today=topped_up.get(currency, 0),
                remaining_today=max(limit - topped_up.get(currency, 0), 0),
                resets_at=resets_at,
            )
            for currency, limit in sorted(settings.top_up_daily_limits.items())
        ]
    )


def can_read(user: AuthenticatedUser, payment: Payment) -> bool:
    """Owners see their payments; admins see every payment."""
    return payment.user_id == user.id or user.in_group(ADMINS)


def to_read(payment: Payment, dispute: Dispute | None = None) -> PaymentRead:
    """The public view of a payment (with its latest dispute, when given)."""
    awaiting_action = payment.status == PaymentStatus.REQUIRES_ACTION
    return PaymentRead(
        id=payment.id,
        status=payment.status,
        provider=payment.provider,
        amount=payment.amount,
        currency=payment.currency,
        amount_refunded=payment.amount_refunded,
        description=payment.description,
        created_at=payment.created_at,
        failure_code=payment.failure_code,
        decline_code=payment.decline_code,
        next_action=payment.next_action if awaiting_action else None,
        client_secret=payment.client_secret if awaiting_action else None,
        dispute=None
        if dispute is None
        else DisputeSummary(
            status=dispute.status,
            amount=dispute.amount,
            currency=dispute.currency,
            reason=dispute.reason,
            funds=dispute.funds,
            created_at=dispute.created_at,
        ),
    )


async def read_visible(
    session: AsyncSession, user: AuthenticatedUser, payment_id: uuid.UUID
) -> PaymentRead:
    """The public view of a payment the caller may see, with its dispute; else 404."""
    payment = await get_visible(session, user, payment_id)
    disputes = await repository.latest_disputes(session, [payment.id])
    return to_read(payment, disputes.get(payment.id))


def failure_problem(payment: Payment, headers: dict[str, str] | None = None) -> ProblemError:
    """The 402 problem a failed payment is answered with, the first time and on replays."""
    extra: dict[str, Any] = {
        "payment_id": str(payment.id),
        "code": payment.failure_code,
        "decline_code": payment.decline_code,
    }
    message = payment.failure_message or "The payment failed."
    if payment.failure_code == "card_declined" or payment.decline_code:
        return CardDeclined(message, headers=headers, **extra)
    return PaymentFailedProblem(message, headers=headers, **extra)


async def get_visible(
    session: AsyncSession, user: AuthenticatedUser, payment_id: uuid.UUID, *, lock: bool = False
) -> Payment:
    """A payment the caller may see (`lock`: locked until the transaction ends), else 404."""
    # 404 also for another user's payment: its existence is not revealed.
    payment = await repository.get(session, payment_id, lock=lock)
    if payment is None or not can_read(user, payment):
        raise PaymentNotFound(f"No payment {payment_id}.")
    return payment


async def list_payments(
    session: AsyncSession,
    user: AuthenticatedUser,
    *,
    limit: int,
    starting_after: uuid.UUID | None,
    user_id: str | None,
) -> PaymentList:
    """A page of the caller's payments (an admin's: every user's, or one user's)."""
    if user.in_group(ADMINS):
        owner = user_id
    else:
        if user_id is not None and user_id != user.id:
            raise Forbidden("Only admins may list another user's payments.")
        owner = user.id
    cursor = None
    if starting_after is not None:
        cursor = await repository.get(session, starting_after)
        if cursor is None or not can_read(user, cursor):
            raise InvalidCursor(f"starting_after: you have no payment {starting_after}.")
    rows = await repository.page(session, user_id=owner, limit=limit, starting_after=cursor)
    disputes = await repository.latest_disputes(session, [p.id for p in rows])
    return PaymentList.of([to_read(p, disputes.get(p.id)) for p in rows], limit)


async def apply_intent(
    session: AsyncSession, payment_id: uuid.UUID, intent: IntentState
) -> Payment:
    """Bring the payment in line with its PaymentIntent as Stripe reports it."""
    links = {"stripe_payment_intent_id": intent.id}
    if intent.charge_id:
        links["stripe_charge_id"] = intent.charge_id
    if intent.status == "succeeded":
        return await mark_succeeded(
            session, payment_id, links, three_d_secure=intent.three_d_secure
        )
    if intent.status == "requires_action":
        updated = await repository.transition(
            session,
            payment_id,
            from_statuses=(PaymentStatus.PROCESSING, PaymentStatus.REQUIRES_ACTION),
            to_status=PaymentStatus.REQUIRES_ACTION,
            values={
                **links,
                "next_action": intent.next_action,
                "client_secret": intent.client_secret,
            },
        )
        return updated or await get_payment(session, payment_id)
    if intent.status in _FAILED_INTENT_STATUSES:
        code = intent.failure_code or (
            "canceled" if intent.status == "canceled" else "payment_failed"
        )
        return await mark_failed(
            session,
            payment_id,
            code=code,
            message=intent.failure_message,
            decline_code=intent.decline_code,
            links=links,
        )
    # processing, requires_confirmation, requires_capture: Stripe has not decided yet.
    updated = await repository.transition(
        session, payment_id, from_statuses=(PaymentStatus.PROCESSING,), to_status=None, values=links
    )
    return updated or await get_payment(session, payment_id)


async def apply_order(session: AsyncSession, payment_id: uuid.UUID, order: OrderState) -> Payment:
    """Bring a PayPal payment in line with its order as PayPal reports it.

    An order awaiting the buyer keeps the payment `requires_action` with the approval link; an
    approved one waits for its capture (by confirm, a webhook or the reconciler); a completed
    capture succeeds it, a declined one fails it, a pending one leaves it `processing`. An order
    whose amount is not the payment's changes nothing.
    """
    payment = await get_payment(session, payment_id)
    if (order.amount, order.currency) != (payment.amount, payment.currency):
        logger.warning(
            "PayPal order %s is %s %s, not payment %s's %s %s",
            order.id,
            order.amount,
            order.currency,
            payment.id,
            payment.amount,
            payment.currency,
        )
        return payment
    links: dict[str, Any] = {"paypal_order_id": order.id}
    if order.capture_id:
        links["paypal_capture_id"] = order.capture_id
    if order.capture_status in _PAYPAL_CAPTURED:
        # The buyer logged in at PayPal and PayPal settled the money: spendable at once.
        return await mark_succeeded(session, payment_id, links, three_d_secure=True)
    if order.capture_status in _PAYPAL_CAPTURE_FAILED:
        return await mark_failed(
            session,
            payment_id,
            code=f"capture_{order.capture_status.lower()}",
            message=f"PayPal {order.capture_status.lower()} the payment"
            + (f" ({order.capture_reason})." if order.capture_reason else "."),
            decline_code=None,
            links=links,
        )
    if order.capture_status == "PENDING":
        updated = await repository.transition(
            session,
            payment_id,
            from_statuses=repository.UNSETTLED,
            to_status=PaymentStatus.PROCESSING,
            values={**links, "next_action": None, "failure_message": order.capture_reason},
        )
        return updated or await get_payment(session, payment_id)
    if order.status == "VOIDED":
        return await mark_canceled(session, payment_id)
    values: dict[str, Any] = dict(links)
    to_status = None
    if order.status in PAYPAL_AWAITING_BUYER and order.approve_url:
        to_status = PaymentStatus.REQUIRES_ACTION
        values["next_action"] = {
            "type": "redirect_to_url",
            "redirect_to_url": {"url": order.approve_url, "return_url": payment.return_url},
        }
    updated = await repository.transition(
        session,
        payment_id,
        from_statuses=repository.UNSETTLED,
        to_status=to_status,
        values=values,
    )
    return updated or await get_payment(session, payment_id)


async def mark_canceled(session: AsyncSession, payment_id: uuid.UUID) -> Payment:
    """Cancel a payment the buyer never approved; no money moved, so no event."""
    updated = await repository.transition(
        session,
        payment_id,
        from_statuses=repository.UNSETTLED,
        to_status=PaymentStatus.CANCELED,
        values={"next_action": None, "lease_expires_at": None},
    )
    if updated is None:
        return await get_payment(session, payment_id)
    logger.info("payment %s canceled", updated.id, extra={"payment_id": str(updated.id)})
    return updated


async def payment_of_order(session: AsyncSession, order_id: str) -> Payment | None:
    """Our payment for a PayPal order."""
    return await repository.find_by_order(session, order_id)


async def payment_of_capture(session: AsyncSession, capture_id: str) -> Payment | None:
    """Our payment for a PayPal capture."""
    return await repository.find_by_capture(session, capture_id)


async def apply_refusal(
    session: AsyncSession, payment_id: uuid.UUID, refusal: StripeRefused
) -> Payment:
    """A payment Stripe refused to confirm (declined card, invalid payment method) has failed."""
    links: dict[str, Any] = {}
    if refusal.intent_id:
        links["stripe_payment_intent_id"] = refusal.intent_id
    if refusal.charge_id:
        links["stripe_charge_id"] = refusal.charge_id
    return await mark_failed(
        session,
        payment_id,
        code=refusal.code or ("card_declined" if refusal.card_error else "payment_failed"),
        message=refusal.message,
        decline_code=refusal.decline_code,
        links=links,
    )


async def mark_succeeded(
    session: AsyncSession,
    payment_id: uuid.UUID,
    links: dict[str, Any],
    *,
    three_d_secure: bool = False,
) -> Payment:
    """Succeed the payment and publish `payment.succeeded`, once whatever reports it.

    3-D Secure authenticated it when Stripe's charge says so (`three_d_secure`), or when it
    succeeds from `requires_action`: the customer completed the challenge Stripe asked for
    (localstripe reports no more than that). The event tells the wallet, which otherwise
    keeps the money from being sent on for CARD_FUNDS_SETTLE_SECONDS.
    """
    # Success wins over an earlier failure: if Stripe took the money, the wallet gets it.
    updated = await repository.transition(
        session,
        payment_id,
        from_statuses=(
            PaymentStatus.PROCESSING,
            PaymentStatus.REQUIRES_ACTION,
            PaymentStatus.FAILED,
            PaymentStatus.CANCELED,
        ),
        to_status=PaymentStatus.SUCCEEDED,
        values={
            **links,
            "next_action": None,
            "failure_code": None,
            "failure_message": None,
            "decline_code": None,
            "lease_expires_at": None,
            # Evaluated on the row as it was before this UPDATE.
            "three_d_secure": or_(
                Payment.status == PaymentStatus.REQUIRES_ACTION,
                Payment.three_d_secure,
                literal(three_d_secure),
            ),
        },
    )
    if updated is None:
        return await get_payment(session, payment_id)
    await publish(
        session,
        PaymentSucceeded(
            payment_id=str(updated.id),
            user_id=updated.user_id,
            amount=updated.amount,
            currency=updated.currency,
            three_d_secure=updated.three_d_secure,
        ),
        event_id=event_id(EventType.PAYMENT_SUCCEEDED, updated.id),
    )
    logger.info("payment %s succeeded", updated.id, extra={"payment_id": str(updated.id)})
    return updated


async def mark_failed(
    session: AsyncSession,
    payment_id: uuid.UUID,
    *,
    code: str,
    message: str | None,
    decline_code: str | None,
    links: dict[str, Any],
) -> Payment:
    """Fail an unsettled payment and publish `payment.failed`, once."""
    updated = await repository.transition(
        session,
        payment_id,
        from_statuses=repository.UNSETTLED,
        to_status=PaymentStatus.FAILED,
        values={
            **links,
            "next_action": None,
            "failure_code": code,
            "failure_message": message,
            "decline_code": decline_code,
            "lease_expires_at": None,
        },
    )
    if updated is None:
        return await get_payment(session, payment_id)
    await publish(
        session,
        PaymentFailed(
            payment_id=str(updated.id),
            user_id=updated.user_id,
            amount=updated.amount,
            currency=updated.currency,
            failure_code=code,
            decline_code=decline_code,
        ),
        event_id=event_id(EventType.PAYMENT_FAILED, updated.id),
    )
    logger.info("payment %s failed: %s", updated.id, code, extra={"payment_id": str(updated.id)})
    return updated


async def get_payment(session: AsyncSession, payment_id: uuid.UUID) -> Payment:
    """A payment by id, or PaymentNotFound."""
    payment = await repository.get(session, payment_id)
    if payment is None:
        raise PaymentNotFound(f"No payment {payment_id}.")
    return payment


async def payment_of_intent(
    session: AsyncSession, intent_id: str, payment_id: str | None, *, amount: object, currency: str
) -> Payment | None:
    """Our payment for a PaymentIntent: by its id, or by the payment id in its metadata.

    The metadata route finds a payment whose confirmation has not come back yet (a webhook
    overtook it); it is taken only if the intent's amount and currency are the payment's.
    """
    payment = await repository.find_by_intent(session, intent_id)
    if payment is not None or payment_id is None:
        return payment
    try:
        candidate = await repository.get(session, uuid.UUID(payment_id))
    except ValueError:
        return None
    if candidate is None:
        return None
    matches = (
        candidate.stripe_payment_intent_id in (None, intent_id)
        and amount == candidate.amount
        and currency == candidate.currency
    )
    if not matches:
        logger.warning("PaymentIntent %s does not match payment %s", intent_id, payment_id)
        return None
    return candidate


async def payment_of_charge(
    session: AsyncSession, charge_id: object, intent_id: object
) -> Payment | None:
    """Our payment for a Stripe Charge: by its PaymentIntent (an id or the object), else by it."""
    if isinstance(intent_id, dict):
        intent_id = intent_id.get("id")
    if isinstance(intent_id, str):
        payment = await repository.find_by_intent(session, intent_id)
        if payment is not None:
            return payment
    if isinstance(charge_id, str):
        return await repository.find_by_charge(session, charge_id)
    return None


async def lock_for_refunds(session: AsyncSession, payment_id: uuid.UUID) -> None:
    """Lock the payment until the transaction ends, so its refunds are counted one at a time."""
    await repository.get(session, payment_id, lock=True)


async def count_refund(session: AsyncSession, payment_id: uuid.UUID, amount: int) -> Payment:
    """Count a succeeded refund against the payment (a CHECK keeps it within the amount)."""
    await repository.add_refunded(session, payment_id, amount)
    return await get_payment(session, payment_id)


async def uncount_refund(session: AsyncSession, payment_id: uuid.UUID, amount: int) -> Payment:
    """Take back a refund counted against the payment (Stripe failed it after it succeeded)."""
    await repository.add_refunded(session, payment_id, -amount)
    return await get_payment(session, payment_id)


async def stale_unsettled(
    session: AsyncSession, *, older_than_seconds: float, limit: int
) -> list[uuid.UUID]:
    """Unsettled payments untouched for `older_than_seconds` that nobody drives, oldest first."""
    return await repository.unsettled_ids(
        session, older_than_seconds=older_than_seconds, limit=limit
    )


async def claim_unsettled(
    session: AsyncSession, payment_id: uuid.UUID, lease_seconds: float
) -> Payment | None:
    """Become the driver of an unsettled payment nobody drives; None if it settled or is held."""
    return await repository.claim_lease(session, payment_id, lease_seconds, repository.UNSETTLED)
