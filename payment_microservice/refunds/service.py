"""Rules of refunds: what may be refunded, and how a refund settles with its event.

Every function takes the session first, flushes and never commits. A refund reserves its
amount while the payment row is locked, so concurrent refunds never add up to more than the
payment; it settles (status test in the UPDATE, event id derived from the refund) once.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from micropay_common.errors import ProblemError
from micropay_common.events import EventType, PaymentRefunded
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
from payment_microservice.refunds import repository
from payment_microservice.refunds.exceptions import (
    PaymentNotRefundable,
    RefundExceedsPayment,
    RefundFailed,
)
from payment_microservice.refunds.schemas import RefundCreate, RefundList, RefundRead
from payment_microservice.stripe_api import RefundState
from payment_microservice.wallet import InsufficientFunds

logger = logging.getLogger("micropay.payment.refunds")

INSUFFICIENT_FUNDS = "insufficient_funds"


def stripe_idempotency_key(refund_id: uuid.UUID) -> str:
    """Stripe's idempotency key for a refund: every retry sends the same one."""
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
    """Fail a pending refund, releasing its reservation."""
    updated = await repository.update_pending(
        session,
        refund_id,
        {"failure_code": code, "failure_message": message, "lease_expires_at": None},
        to_status=RefundStatus.FAILED,
    )
    return updated or await _current(session, refund_id)


async def settle(
    session: AsyncSession, refund_id: uuid.UUID, *, captured_hold_id: str | None
) -> Refund:
    """Succeed a pending refund: count it on the payment and publish `payment.refunded` once.

    `captured_hold_id` tells the transactions service the wallet was already debited through
    that hold; without it (the hold had expired) the transactions service debits it itself.
    """
    updated = await repository.update_pending(
        session, refund_id, {"lease_expires_at": None}, to_status=RefundStatus.SUCCEEDED
    )
    if updated is None:
        return await _current(session, refund_id)
    await _count_and_publish(session, updated, hold_id=captured_hold_id)
    return updated


async def record_stripe_refund(
    session: AsyncSession, payment: Payment, refund: RefundState
) -> bool:
    """Apply a refund Stripe reports (webhook); True when it changed anything.

    The echo of a refund we started (found by the refund id in its metadata, or by its Stripe
    id) changes nothing: its own driver debits the wallet through a hold. A refund made at
    Stripe directly (dashboard) is recorded and published without a hold, so the transactions
    service debits the wallet.
    """
    if refund.status not in ("succeeded", "pending"):
        logger.warning("Stripe refund %s is %s; not applied", refund.id, refund.status)
        return False
    ours = None
    if refund.refund_id:
        try:
            ours = await repository.get(session, uuid.UUID(refund.refund_id))
        except ValueError:
            ours = None
    if ours is None:
        ours = await repository.get_by_stripe_id(session, refund.id)
    if ours is not None:
        if ours.stripe_refund_id is None and ours.status == RefundStatus.PENDING:
            await repository.update_pending(
                session, ours.id, {"stripe_refund_id": refund.id}, to_status=None
            )
        return False
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


async def claim_pending(
    session: AsyncSession, refund_id: uuid.UUID, lease_seconds: float
) -> Refund | None:
    """Become the driver of a pending refund nobody drives; None if it settled or is held."""
    return await repository.claim_lease(session, refund_id, lease_seconds)


async def _current(session: AsyncSession, refund_id: uuid.UUID) -> Refund:
    refund = await repository.get(session, refund_id)
    assert refund is not None
    return refund
