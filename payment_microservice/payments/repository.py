"""SQL of the payments table."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, literal, or_, select, text, tuple_, update
from sqlalchemy.dialects.postgresql import distinct_on, insert
from sqlalchemy.ext.asyncio import AsyncSession

from micropay_common.idempotency import leases
from payment_microservice.models import Dispute, Payment, PaymentStatus

UNSETTLED = (PaymentStatus.PROCESSING, PaymentStatus.REQUIRES_ACTION)


async def insert_if_new(session: AsyncSession, values: dict[str, Any]) -> Payment | None:
    """Insert a payment unless (user_id, idempotency_key) exists; None when it did."""
    inserted = await session.scalars(
        insert(Payment)
        .values(**values)
        .on_conflict_do_nothing(constraint="payments_user_idempotency_key")
        .returning(Payment)
    )
    return inserted.one_or_none()


async def get_by_key(session: AsyncSession, user_id: str, idempotency_key: str) -> Payment | None:
    """The payment a user made with an Idempotency-Key."""
    return await session.scalar(
        select(Payment)
        .where(Payment.user_id == user_id, Payment.idempotency_key == idempotency_key)
        .execution_options(populate_existing=True)
    )


async def get(
    session: AsyncSession, payment_id: uuid.UUID, *, lock: bool = False
) -> Payment | None:
    """A payment by id, optionally locked until the transaction ends."""
    query = select(Payment).where(Payment.id == payment_id)
    if lock:
        query = query.with_for_update()
    return await session.scalar(query.execution_options(populate_existing=True))


async def find_by_intent(session: AsyncSession, intent_id: str) -> Payment | None:
    """The payment a Stripe PaymentIntent belongs to."""
    return await session.scalar(
        select(Payment)
        .where(Payment.stripe_payment_intent_id == intent_id)
        .execution_options(populate_existing=True)
    )


async def find_by_charge(session: AsyncSession, charge_id: str) -> Payment | None:
    """The payment a Stripe Charge belongs to."""
    return await session.scalar(
        select(Payment)
        .where(Payment.stripe_charge_id == charge_id)
        .execution_options(populate_existing=True)
    )


async def find_by_order(session: AsyncSession, order_id: str) -> Payment | None:
    """The payment a PayPal order belongs to."""
    return await session.scalar(
        select(Payment)
        .where(Payment.paypal_order_id == order_id)
        .execution_options(populate_existing=True)
    )


async def find_by_capture(session: AsyncSession, capture_id: str) -> Payment | None:
    """The payment a PayPal capture belongs to."""
    return await session.scalar(
        select(Payment)
        .where(Payment.paypal_capture_id == capture_id)
        .execution_options(populate_existing=True)
    )


async def claim_lease(
    session: AsyncSession, payment_id: uuid.UUID, seconds: float, statuses: Sequence[PaymentStatus]
) -> Payment | None:
    """Become the payment's only driver for `seconds`, if it is in `statuses` and nobody is."""
    return await leases.claim(session, Payment, payment_id, seconds, statuses)


async def release_lease(session: AsyncSession, payment_id: uuid.UUID, lease: datetime) -> None:
    """Give the lease up, unless it already expired and someone else holds it."""
    await leases.release(session, Payment, payment_id, lease)


async def transition(
    session: AsyncSession,
    payment_id: uuid.UUID,
    *,
    from_statuses: Sequence[PaymentStatus] | None,
    to_status: PaymentStatus | None,
    values: dict[str, Any],
) -> Payment | None:
    """Update the payment if its status is one of `from_statuses`; the row, or None if not.

    The status test in the UPDATE itself is what makes concurrent settlements (the request,
    a webhook, the reconciler) change a payment, and publish its event, exactly once.
    """
    query = update(Payment).where(Payment.id == payment_id)
    if from_statuses is not None:
        query = query.where(Payment.status.in_(from_statuses))
    changes = dict(values, updated_at=func.now())
    if to_status is not None:
        changes["status"] = to_status
    return await session.scalar(
        query.values(**changes).returning(Payment).execution_options(populate_existing=True)
    )


async def page(
    session: AsyncSession,
    *,
    user_id: str | None,
    limit: int,
    starting_after: Payment | None,
) -> list[Payment]:
    """Up to `limit` + 1 payments, newest first, after a cursor; all users' when user_id is None."""
    query = select(Payment)
    if user_id is not None:
        query = query.where(Payment.user_id == user_id)
    if starting_after is not None:
        query = query.where(
            tuple_(Payment.created_at, Payment.id)
            < tuple_(
                literal(starting_after.created_at, Payment.created_at.type),
                literal(starting_after.id, Payment.id.type),
            )
        )
    query = query.order_by(Payment.created_at.desc(), Payment.id.desc()).limit(limit + 1)
    return list(await session.scalars(query))


async def unsettled_ids(
    session: AsyncSession, *, older_than_seconds: float, limit: int
) -> list[uuid.UUID]:
    """Payments still processing or awaiting action, untouched for a while, oldest first."""
    rows = await session.scalars(
        select(Payment.id)
        .where(
            Payment.status.in_(UNSETTLED),
            Payment.updated_at < func.now() - timedelta(seconds=older_than_seconds),
            or_(Payment.lease_expires_at.is_(None), Payment.lease_expires_at < func.now()),
        )
        .order_by(Payment.updated_at)
        .limit(limit)
    )
    return list(rows)


async def add_refunded(session: AsyncSession, payment_id: uuid.UUID, amount: int) -> None:
    """Count a succeeded refund against the payment (the CHECK keeps it within the amount)."""
    await session.execute(
        update(Payment)
        .where(Payment.id == payment_id)
        .values(amount_refunded=Payment.amount_refunded + amount, updated_at=func.now())
    )


async def latest_disputes(
    session: AsyncSession, payment_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, Dispute]:
    """The latest dispute of each of the payments that has one."""
    if not payment_ids:
        return {}
    rows = await session.scalars(
        select(Dispute)
        .where(Dispute.payment_id.in_(payment_ids))
        .order_by(Dispute.payment_id, Dispute.created_at.desc(), Dispute.id.desc())
        .ext(distinct_on(Dispute.payment_id))
        .execution_options(populate_existing=True)
    )
    return {row.payment_id: row for row in rows}


# Two requests of one user wait for each other here until the first commits its payment, so
# the second counts it: a per-user lock (transaction-scoped) without a row to lock.
_LOCK_USER_TOP_UPS = text(
    "SELECT pg_advisory_xact_lock(hashtextextended('micropay.top_ups:' || :user_id, 0))"
)


async def lock_user_top_ups(session: AsyncSession, user_id: str) -> None:
    """Serialise the creation of the user's top-ups until the transaction ends."""
    await session.execute(_LOCK_USER_TOP_UPS, {"user_id": user_id})


async def top_ups_since(session: AsyncSession, user_id: str, since: datetime) -> dict[str, int]:
    """What the user topped up since `since`, by currency: every payment but failed and
    canceled ones."""
    rows = await session.execute(
        select(Payment.currency, func.sum(Payment.amount).label("total"))
        .where(
            Payment.user_id == user_id,
            Payment.created_at >= since,
            Payment.status.not_in((PaymentStatus.FAILED, PaymentStatus.CANCELED)),
        )
        .group_by(Payment.currency)
    )
    return {row.currency: int(row.total) for row in rows}
