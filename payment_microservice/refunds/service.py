"""Rules of refunds: what may be refunded, and how a refund settles with its events.

Every function takes the session first, flushes and never commits. A refund reserves its
amount while the payment row is locked, so concurrent refunds never add up to more than the
payment. Its status moves only along TRANSITIONS, each move a status-tested UPDATE with an
event id derived from the refund, so every move happens once, whoever reports it and in
whatever order: the request, a webhook, the reconciler.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from micropay_common.errors import ProblemError
from micropay_common.events import EventType, PaymentRefunded, PaymentRefundFailed
from micropay_common.idempotency import leases
from micropay_common.outbox import publish
from micropay_common.security import AuthenticatedUser
from payment_microservice.models import (
    Payment,
    PaymentStatus,
    Refund,
    RefundOrigin,
    RefundStatus,
)
from payment_microservice.payments import service as payments_service
from payment_microservice.paypal_api import PayPalRefundState
from payment_microservice.refunds import repository
from payment_microservice.refunds.exceptions import (
    PaymentNotRefundable,
    RefundExceedsPayment,
    RefundFailed,
)
from payment_microservice.refunds.schemas import RefundCreate, RefundList, RefundRead
from payment_microservice.stripe_api import RefundState
from payment_microservice.wallet import InsufficientFunds, WalletHasDebt

logger = logging.getLogger("micropay.payment.refunds")

INSUFFICIENT_FUNDS = InsufficientFunds.type
WALLET_HAS_DEBT = WalletHasDebt.type

TRANSITIONS: Mapping[RefundStatus, frozenset[RefundStatus]] = {
    # Stripe answered pending (or requires_action), or has not answered: the hold is kept.
    RefundStatus.PENDING: frozenset({RefundStatus.SUCCEEDED, RefundStatus.FAILED}),
    # Stripe may still fail a refund it reported succeeded; the wallet's debit is reversed.
    RefundStatus.SUCCEEDED: frozenset({RefundStatus.FAILED}),
    # Final at Stripe too: a later `succeeded` (a late or forged event) changes nothing.
    RefundStatus.FAILED: frozenset(),
}
"""The moves a refund's status may make; nothing else moves it."""

STRIPE_SUCCEEDED = "succeeded"
STRIPE_FAILED = frozenset({"failed", "canceled"})
"""Stripe Refund statuses that end a refund without money reaching the card."""


PAYPAL_STATUSES = {
    "COMPLETED": STRIPE_SUCCEEDED,
    "PENDING": "pending",
    "FAILED": "failed",
    "CANCELLED": "canceled",
}
"""PayPal's refund statuses, as the Stripe statuses that settle a refund the same way."""


def from_paypal(refund: PayPalRefundState) -> RefundState:
    """A PayPal refund as the RefundState the rules of refunds act on."""
    return RefundState(
        id=refund.id,
        status=PAYPAL_STATUSES.get(refund.status, "pending"),
        amount=refund.amount or 0,
        currency=refund.currency or "",
        payment_intent_id=None,
        charge_id=refund.capture_id,
        refund_id=refund.refund_id,
        failure_reason=refund.reason.lower() if refund.reason else None,
    )


def stripe_idempotency_key(refund_id: uuid.UUID) -> str:
    """Stripe's idempotency key (PayPal's request id) for a refund: every retry sends it."""
    return f"micropay-refund-{refund_id}"


def hold_reference(refund_id: uuid.UUID) -> str:
    """The wallet hold's reference: a retried hold request finds the same hold."""
    return f"refund:{refund_id}"


def to_read(refund: Refund) -> RefundRead:
    """The public view of a refund."""
    return RefundRead(
        id=refund.id,
        payment_id=refund.payment_id,
        amount=refund.amount,
        currency=refund.currency,
        status=refund.status,
        reason=refund.reason,
        failure_code=refund.failure_code,
        created_at=refund.created_at,
    )


def failure_problem(refund: Refund, headers: dict[str, str] | None = None) -> ProblemError:
    """The problem a failed refund is answered with, the first time and on replays."""
    extra: dict[str, Any] = {"refund_id": str(refund.id), "payment_id": str(refund.payment_id)}
    if refund.failure_code == INSUFFICIENT_FUNDS:
        return InsufficientFunds(
            refund.failure_message or "The wallet does not hold enough to cover this refund.",
            headers=headers,
            **extra,
        )
    if refund.failure_code == WALLET_HAS_DEBT:
        return WalletHasDebt(
            refund.failure_message or "You owe money in this currency; nothing can be refunded.",
            headers=headers,
            currency=refund.currency,
            **extra,
        )
    return RefundFailed(
        refund.failure_message or "Stripe refused the refund.",
        headers=headers,
        code=refund.failure_code,
        **extra,
    )


async def reserve(
    session: AsyncSession,
    user: AuthenticatedUser,
    payment_id: uuid.UUID,
    *,
    idempotency_key: str,
    request_hash: str,
    body: RefundCreate,
    lease_seconds: float,
) -> Refund | None:
    """Record a pending refund, reserving its amount; None if the key was taken meanwhile."""
    # The lock serialises refunds of one payment: each sees the reservations before it.
    payment = await payments_service.get_visible(session, user, payment_id, lock=True)
    if payment.status != PaymentStatus.SUCCEEDED:
        raise PaymentNotRefundable(
            f"The payment is {payment.status}; only a succeeded payment can be refunded.",
            payment_id=str(payment.id),
            payment_status=payment.status,
        )
    refundable = (
        payment.amount
        - payment.amount_refunded
        - await repository.pending_total(session, payment.id)
    )
    amount = body.amount if body.amount is not None else refundable
    if refundable <= 0 or amount > refundable:
        raise RefundExceedsPayment(
            f"At most {max(refundable, 0)} {payment.currency} minor units of this payment can "
            "still be refunded.",
            refundable=max(refundable, 0),
            currency=payment.currency,
        )
    return await repository.insert_if_new(
        session,
        {
            "id": uuid.uuid4(),
            "payment_id": payment.id,
            "amount": amount,
            "currency": payment.currency,
            "status": RefundStatus.PENDING,
            "origin": RefundOrigin.API,
            "reason": body.reason,
            "requested_by": user.id,
            "idempotency_key": idempotency_key,
            "request_hash": request_hash,
            "lease_expires_at": leases.lease_until(lease_seconds),
        },
    )


async def list_refunds(
    session: AsyncSession, user: AuthenticatedUser, payment_id: uuid.UUID
) -> RefundList:
    """The refunds of a payment the caller may see."""
    await payments_service.get_visible(session, user, payment_id)
    return RefundList(data=[to_read(r) for r in await repository.for_payment(session, payment_id)])


async def mark_failed(
    session: AsyncSession, refund_id: uuid.UUID, *, code: str, message: str | None
) -> Refund:
    """Fail a pending refund Stripe never accepted, releasing its reservation.

    No event: nothing was debited, and the caller is answered with the failure.
    """
    updated = await _move(
        session,
        refund_id,
        RefundStatus.PENDING,
        RefundStatus.FAILED,
        {"failure_code": code, "failure_message": message},
    )
    return updated or await _current(session, refund_id)


async def settle(session: AsyncSession, refund_id: uuid.UUID) -> Refund:
    """Succeed a pending refund: count it on the payment and publish `payment.refunded` once.

    The event names the refund's hold: the transactions service captures it if the driver has
    not, or debits the wallet directly if it is gone (it expired while nobody renewed it).
    """
    updated = await _move(session, refund_id, RefundStatus.PENDING, RefundStatus.SUCCEEDED)
    if updated is None:
        return await _current(session, refund_id)
    await _count_and_publish(session, updated, hold_id=updated.hold_id)
    return updated


async def fail_at_stripe(
    session: AsyncSession, refund_id: uuid.UUID, *, code: str, message: str | None
) -> Refund:
    """Fail a refund Stripe failed or cancelled, publishing `payment.refund_failed` once.

    From `pending` the hold is released; from `succeeded` (the wallet was debited) the refund
    is taken off the payment's amount refunded and the debit is reversed. A failed refund
    stays as it is.
    """
    values = {"failure_code": code, "failure_message": message}
    was_refunded = False
    updated = await _move(session, refund_id, RefundStatus.PENDING, RefundStatus.FAILED, values)
    if updated is None:
        updated = await _move(
            session, refund_id, RefundStatus.SUCCEEDED, RefundStatus.FAILED, values
        )
        was_refunded = updated is not None
    if updated is None:
        return await _current(session, refund_id)
    if was_refunded:
        payment = await payments_service.uncount_refund(session, updated.payment_id, updated.amount)
    else:
        payment = await payments_service.get_payment(session, updated.payment_id)
    await publish(
        session,
        PaymentRefundFailed(
            payment_id=str(payment.id),
            refund_id=str(updated.id),
            user_id=payment.user_id,
            amount=updated.amount,
            currency=updated.currency,
            hold_id=updated.hold_id,
            was_refunded=was_refunded,
            failure_code=code,
        ),
        event_id=payments_service.event_id(EventType.PAYMENT_REFUND_FAILED, updated.id),
    )
    logger.warning(
        "refund %s of payment %s failed at Stripe (%s)%s",
        updated.id,
        payment.id,
        code,
        "; its debit is reversed" if was_refunded else "",
        extra={"payment_id": str(payment.id), "refund_id": str(updated.id)},
    )
    return updated


async def apply_stripe_state(
    session: AsyncSession, refund_id: uuid.UUID, state: RefundState
) -> tuple[Refund, bool]:
    """Bring our refund in line with its Stripe Refund as retrieved from Stripe.

    `succeeded` settles it, `failed` or `canceled` fails it, anything else (`pending`,
    `requires_action`) keeps it pending with the Stripe id recorded. Returns the refund and
    whether its status changed.
    """
    before = await _current(session, refund_id)
    if state.status == STRIPE_SUCCEEDED:
        after = await settle(session, refund_id)
    elif state.status in STRIPE_FAILED:
        after = await fail_at_stripe(
            session,
            refund_id,
            code=state.failure_reason or state.status,
            message=f"Stripe reports the refund {state.status}.",
        )
    else:
        after = before
    if (
        after.stripe_refund_id is None
        and after.paypal_refund_id is None
        and after.status == RefundStatus.PENDING
    ):
        after = (
            await repository.update_pending(
                session, refund_id, {"stripe_refund_id": state.id}, to_status=None
            )
            or after
        )
    if after.status != before.status:
        logger.info("refund %s: %s -> %s", refund_id, before.status, after.status)
    return after, after.status != before.status


async def record_stripe_refund(
    session: AsyncSession, payment: Payment, refund: RefundState
) -> bool:
    """Apply a refund as retrieved from Stripe (for a webhook); True when it changed anything.

    A refund we started (found by the refund id in its metadata, or by its Stripe id) follows
    its Stripe status. A refund made at Stripe directly (dashboard) and not failed is recorded
    `succeeded` and published without a hold, so the transactions service debits the wallet
    at once (the card may already be credited); if Stripe fails it later, that debit is
    reversed.
    """
    ours = None
    if refund.refund_id:
        try:
            ours = await repository.get(session, uuid.UUID(refund.refund_id))
        except ValueError:
            ours = None
        if ours is not None and ours.payment_id != payment.id:
            logger.warning(
                "Stripe refund %s names refund %s of another payment", refund.id, ours.id
            )
            return False
    if ours is None:
        ours = await repository.get_by_stripe_id(session, refund.id)
    if ours is not None:
        if ours.stripe_refund_id not in (None, refund.id):
            logger.warning(
                "refund %s is Stripe's %s, not %s", ours.id, ours.stripe_refund_id, refund.id
            )
            return False
        _, changed = await apply_stripe_state(session, ours.id, refund)
        return changed
    if refund.status in STRIPE_FAILED:
        return False  # never recorded, never debited: nothing to undo
    # Locked so that the amount refunded is added up in order with our own refunds.
    await payments_service.lock_for_refunds(session, payment.id)
    recorded = await repository.insert_if_new(
        session,
        {
            "id": uuid.uuid4(),
            "payment_id": payment.id,
            "amount": refund.amount,
            "currency": payment.currency,
            "status": RefundStatus.SUCCEEDED,
            "origin": RefundOrigin.STRIPE,
            "stripe_refund_id": refund.id,
        },
    )
    if recorded is None:
        return False
    await _count_and_publish(session, recorded, hold_id=None)
    return True


async def record_paypal_refund(
    session: AsyncSession, payment: Payment, refund: PayPalRefundState
) -> bool:
    """Apply a refund as retrieved from PayPal (for a webhook); True when it changed anything.

    A refund we made (found by the refund id in its `custom_id`, or by PayPal's id) follows
    its PayPal status. One PayPal made itself (a refund from PayPal's dashboard, a reversal)
    is recorded `succeeded` with the origin `paypal` and published without a hold, so the
    transactions service debits the wallet at once.
    """
    ours = None
    if refund.refund_id:
        try:
            ours = await repository.get(session, uuid.UUID(refund.refund_id))
        except ValueError:
            ours = None
        if ours is not None and ours.payment_id != payment.id:
            logger.warning(
                "PayPal refund %s names refund %s of another payment", refund.id, ours.id
            )
            return False
    if ours is None:
        ours = await repository.get_by_paypal_id(session, refund.id)
    if ours is not None:
        if ours.paypal_refund_id not in (None, refund.id):
            logger.warning(
                "refund %s is PayPal's %s, not %s", ours.id, ours.paypal_refund_id, refund.id
            )
            return False
        if ours.paypal_refund_id is None and ours.status == RefundStatus.PENDING:
            await repository.update_pending(
                session, ours.id, {"paypal_refund_id": refund.id}, to_status=None
            )
        _, changed = await apply_stripe_state(session, ours.id, from_paypal(refund))
        return changed
    if PAYPAL_STATUSES.get(refund.status) != STRIPE_SUCCEEDED or refund.amount is None:
        return False  # never recorded, never debited: nothing to do until it completes
    await payments_service.lock_for_refunds(session, payment.id)
    recorded = await repository.insert_if_new(
        session,
        {
            "id": uuid.uuid4(),
            "payment_id": payment.id,
            "amount": refund.amount,
            "currency": payment.currency,
            "status": RefundStatus.SUCCEEDED,
            "origin": RefundOrigin.PAYPAL,
            "paypal_refund_id": refund.id,
        },
    )
    if recorded is None:
        return False
    await _count_and_publish(session, recorded, hold_id=None)
    return True


async def _move(
    session: AsyncSession,
    refund_id: uuid.UUID,
    from_status: RefundStatus,
    to_status: RefundStatus,
    values: dict[str, Any] | None = None,
) -> Refund | None:
    """One move along TRANSITIONS, if the refund is in `from_status`; None when it is not."""
    if to_status not in TRANSITIONS[from_status]:
        raise ValueError(f"a refund never moves from {from_status} to {to_status}")
    return await repository.transition(
        session,
        refund_id,
        {**(values or {}), "lease_expires_at": None},
        from_status=from_status,
        to_status=to_status,
    )


async def _count_and_publish(session: AsyncSession, refund: Refund, *, hold_id: str | None) -> None:
    payment = await payments_service.count_refund(session, refund.payment_id, refund.amount)
    await publish(
        session,
        PaymentRefunded(
            payment_id=str(payment.id),
            refund_id=str(refund.id),
            user_id=payment.user_id,
            amount=refund.amount,
            currency=refund.currency,
            hold_id=hold_id,
        ),
        event_id=payments_service.event_id(EventType.PAYMENT_REFUNDED, refund.id),
    )
    logger.info(
        "refund %s of payment %s succeeded (%d %s)",
        refund.id,
        payment.id,
        refund.amount,
        refund.currency,
        extra={"payment_id": str(payment.id), "refund_id": str(refund.id)},
    )


async def stale_pending(
    session: AsyncSession, *, older_than_seconds: float, limit: int
) -> list[uuid.UUID]:
    """Pending refunds untouched for `older_than_seconds` that nobody drives, oldest first."""
    return await repository.pending_ids(session, older_than_seconds=older_than_seconds, limit=limit)


async def pending_holds(
    session: AsyncSession, *, after: uuid.UUID | None, limit: int
) -> list[tuple[uuid.UUID, str]]:
    """(refund id, hold id) of pending refunds holding wallet money, by refund id after `after`."""
    return await repository.pending_holds(session, after=after, limit=limit)


async def claim_pending(
    session: AsyncSession, refund_id: uuid.UUID, lease_seconds: float
) -> Refund | None:
    """Become the driver of a pending refund nobody drives; None if it settled or is held."""
    return await repository.claim_lease(session, refund_id, lease_seconds)


async def _current(session: AsyncSession, refund_id: uuid.UUID) -> Refund:
    refund = await repository.get(session, refund_id)
    assert refund is not None
    return refund
