"""Rules of disputes: a dispute follows Stripe's Dispute, each step once, in order.

A dispute has two states that move apart: its status (`open`, then `won` or `lost`) and its
funds (`none`, then `withdrawn`, then `reinstated`). Each moves only along its TRANSITIONS,
by a state-tested UPDATE, and each move publishes one event whose id is derived from the
dispute, so whatever reports a step (any of Stripe's five dispute events, repeated or out of
order) it happens once. What Stripe says is read from the Dispute as retrieved from Stripe
(its status and balance transactions), never from an event's body; a later event that finds
Stripe further on catches up every step before it, in order: a reinstatement is never
published before its withdrawal.

Every function takes the session first, flushes and never commits.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping

from sqlalchemy.ext.asyncio import AsyncSession

from micropay_common.events import (
    EventType,
    PaymentDisputeClosed,
    PaymentDisputeFundsReinstated,
    PaymentDisputeFundsWithdrawn,
    PaymentDisputeOpened,
)
from micropay_common.outbox import publish
from payment_microservice.disputes import repository
from payment_microservice.models import Dispute, DisputeFunds, DisputeStatus, Payment
from payment_microservice.payments import service as payments_service
from payment_microservice.stripe_api import DisputeState

logger = logging.getLogger("micropay.payment.disputes")

STATUS_TRANSITIONS: Mapping[DisputeStatus, frozenset[DisputeStatus]] = {
    DisputeStatus.OPEN: frozenset({DisputeStatus.WON, DisputeStatus.LOST}),
    # Stripe's decision is final: a later (stale or forged) status changes nothing.
    DisputeStatus.WON: frozenset(),
    DisputeStatus.LOST: frozenset(),
}
FUNDS_TRANSITIONS: Mapping[DisputeFunds, frozenset[DisputeFunds]] = {
    DisputeFunds.NONE: frozenset({DisputeFunds.WITHDRAWN}),
    DisputeFunds.WITHDRAWN: frozenset({DisputeFunds.REINSTATED}),
    DisputeFunds.REINSTATED: frozenset(),
}
"""The moves a dispute's status and funds may make; nothing else moves them."""

STRIPE_WON = frozenset({"won", "warning_closed"})
"""Stripe statuses that end a dispute with the money ours (an inquiry that closed included)."""
STRIPE_LOST = frozenset({"lost"})


def status_of(state: DisputeState) -> DisputeStatus:
    """Our status for Stripe's."""
    if state.status in STRIPE_WON:
        return DisputeStatus.WON
    if state.status in STRIPE_LOST:
        return DisputeStatus.LOST
    return DisputeStatus.OPEN


def funds_of(state: DisputeState) -> DisputeFunds:
    """Where the disputed money stands at Stripe.

    A balance transaction giving money back, or a dispute won after a withdrawal, is a
    reinstatement; one taking money, or a lost dispute (Stripe takes the amount at the latest
    when it closes), a withdrawal.
    """
    status = status_of(state)
    if state.reinstated > 0 or (status == DisputeStatus.WON and state.withdrawn > 0):
        return DisputeFunds.REINSTATED
    if state.withdrawn > 0 or status == DisputeStatus.LOST:
        return DisputeFunds.WITHDRAWN
    return DisputeFunds.NONE


async def record_stripe_dispute(
    session: AsyncSession, payment: Payment, state: DisputeState
) -> bool:
    """Bring the payment's dispute in line with Stripe's Dispute; True when anything changed."""
    if state.currency != payment.currency or not 0 < state.amount <= payment.amount:
        logger.warning(
            "Stripe dispute %s (%d %s) does not fit payment %s (%d %s); ignored",
            state.id,
            state.amount,
            state.currency,
            payment.id,
            payment.amount,
            payment.currency,
        )
        return False
    changed = False
    created = await repository.insert_if_new(
        session,
        {
            "id": uuid.uuid4(),
            "payment_id": payment.id,
            "stripe_dispute_id": state.id,
            "amount": state.amount,
            "currency": state.currency,
            "reason": state.reason,
            "status": DisputeStatus.OPEN,
            "stripe_status": state.status,
            "funds": DisputeFunds.NONE,
        },
    )
    if created is not None:
        changed = True
        await publish(
            session,
            PaymentDisputeOpened(
                payment_id=str(payment.id),
                dispute_id=str(created.id),
                user_id=payment.user_id,
                amount=created.amount,
                currency=created.currency,
                reason=created.reason,
            ),
            event_id=payments_service.event_id(EventType.PAYMENT_DISPUTE_OPENED, created.id),
        )
        logger.warning(
            "payment %s is disputed (%s, %d %s)",
            payment.id,
            state.reason,
            state.amount,
            state.currency,
            extra={"payment_id": str(payment.id), "dispute_id": str(created.id)},
        )
    dispute = created or await repository.get_by_stripe_id(session, state.id)
    assert dispute is not None
    if dispute.payment_id != payment.id:
        logger.warning("Stripe dispute %s is recorded for payment %s", state.id, dispute.payment_id)
        return changed
    await repository.set_stripe_status(session, dispute.id, state.status)
    target = funds_of(state)
    # The money first, in order: a reinstatement always follows its withdrawal.
    if target in (DisputeFunds.WITHDRAWN, DisputeFunds.REINSTATED):
        changed |= await _withdraw(session, payment, dispute.id, state)
    if target == DisputeFunds.REINSTATED:
        changed |= await _reinstate(session, payment, dispute.id, state)
    status = status_of(state)
    if status != DisputeStatus.OPEN:
        changed |= await _close(session, payment, dispute.id, status)
    return changed


async def _withdraw(
    session: AsyncSession, payment: Payment, dispute_id: uuid.UUID, state: DisputeState
) -> bool:
    moved = await _move_funds(
        session,
        dispute_id,
        DisputeFunds.NONE,
        DisputeFunds.WITHDRAWN,
        {
            "fee": state.fee,
            "fee_currency": state.fee_currency or payment.currency,
        },
        stamp="funds_withdrawn_at",
    )
    if moved is None:
        return False
    await publish(
        session,
        PaymentDisputeFundsWithdrawn(
            payment_id=str(payment.id),
            dispute_id=str(moved.id),
            user_id=payment.user_id,
            amount=moved.amount,
            currency=moved.currency,
            fee=moved.fee,
            fee_currency=moved.fee_currency,
        ),
        event_id=payments_service.event_id(EventType.PAYMENT_DISPUTE_FUNDS_WITHDRAWN, moved.id),
    )
    logger.warning(
        "dispute %s of payment %s: Stripe withdrew %d %s (fee %d)",
        moved.id,
        payment.id,
        moved.amount,
        moved.currency,
        moved.fee,
        extra={"payment_id": str(payment.id), "dispute_id": str(moved.id)},
    )
    return True


async def _reinstate(
    session: AsyncSession, payment: Payment, dispute_id: uuid.UUID, state: DisputeState
) -> bool:
    current = await repository.get_by_stripe_id(session, state.id)
    assert current is not None
    # Never more than the fee recorded at the withdrawal (the CHECK holds it there too).
    fee_returned = min(state.fee_returned, current.fee)
    moved = await _move_funds(
        session,
        dispute_id,
        DisputeFunds.WITHDRAWN,
        DisputeFunds.REINSTATED,
        {"fee_returned": fee_returned},
        stamp="funds_reinstated_at",
    )
    if moved is None:
        return False
    await publish(
        session,
        PaymentDisputeFundsReinstated(
            payment_id=str(payment.id),
            dispute_id=str(moved.id),
            user_id=payment.user_id,
            amount=moved.amount,
            currency=moved.currency,
            fee=moved.fee,
            fee_returned=moved.fee_returned,
            fee_currency=moved.fee_currency,
        ),
        event_id=payments_service.event_id(EventType.PAYMENT_DISPUTE_FUNDS_REINSTATED, moved.id),
    )
    logger.info(
        "dispute %s of payment %s: Stripe reinstated %d %s",
        moved.id,
        payment.id,
        moved.amount,
        moved.currency,
        extra={"payment_id": str(payment.id), "dispute_id": str(moved.id)},
    )
    return True


async def _close(
    session: AsyncSession, payment: Payment, dispute_id: uuid.UUID, status: DisputeStatus
) -> bool:
    if status not in STATUS_TRANSITIONS[DisputeStatus.OPEN]:
        raise ValueError(f"a dispute never moves from open to {status}")
    moved = await repository.transition(
        session,
        dispute_id,
        {"status": status},
        column="status",
        from_value=DisputeStatus.OPEN,
        stamp="closed_at",
    )
    if moved is None:
        return False
    await publish(
        session,
        PaymentDisputeClosed(
            payment_id=str(payment.id),
            dispute_id=str(moved.id),
            user_id=payment.user_id,
            amount=moved.amount,
            currency=moved.currency,
            status="won" if status == DisputeStatus.WON else "lost",
        ),
        event_id=payments_service.event_id(EventType.PAYMENT_DISPUTE_CLOSED, moved.id),
    )
    logger.info("dispute %s of payment %s closed: %s", moved.id, payment.id, status)
    return True


async def _move_funds(
    session: AsyncSession,
    dispute_id: uuid.UUID,
    from_funds: DisputeFunds,
    to_funds: DisputeFunds,
    values: dict[str, object],
    *,
    stamp: str,
) -> Dispute | None:
    """One move along FUNDS_TRANSITIONS, if the dispute's funds are `from_funds`."""
    if to_funds not in FUNDS_TRANSITIONS[from_funds]:
        raise ValueError(f"a dispute's funds never move from {from_funds} to {to_funds}")
    return await repository.transition(
        session,
        dispute_id,
        {**values, "funds": to_funds},
        column="funds",
        from_value=from_funds,
        stamp=stamp,
    )
