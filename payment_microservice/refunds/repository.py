"""SQL of the refunds table."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, or_, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from micropay_common.idempotency import leases
from payment_microservice.models import Refund, RefundStatus


async def insert_if_new(session: AsyncSession, values: dict[str, Any]) -> Refund | None:
    """Insert a refund unless its idempotency key or Stripe refund id exists; None when it did."""
    inserted = await session.scalars(
        insert(Refund).values(**values).on_conflict_do_nothing().returning(Refund)
    )
    return inserted.one_or_none()


async def get(session: AsyncSession, refund_id: uuid.UUID) -> Refund | None:
    """A refund by id."""
    return await session.scalar(
        select(Refund).where(Refund.id == refund_id).execution_options(populate_existing=True)
    )


async def get_by_key(session: AsyncSession, requested_by: str, key: str) -> Refund | None:
    """The refund a caller asked for with an Idempotency-Key."""
    return await session.scalar(
        select(Refund)
        .where(Refund.requested_by == requested_by, Refund.idempotency_key == key)
        .execution_options(populate_existing=True)
    )


async def get_by_stripe_id(session: AsyncSession, stripe_refund_id: str) -> Refund | None:
    """The refund recorded for a Stripe refund."""
    return await session.scalar(
        select(Refund)
        .where(Refund.stripe_refund_id == stripe_refund_id)
        .execution_options(populate_existing=True)
    )


async def get_by_paypal_id(session: AsyncSession, paypal_refund_id: str) -> Refund | None:
    """Our refund recorded with this PayPal refund id."""
    return await session.scalar(
        select(Refund)
        .where(Refund.paypal_refund_id == paypal_refund_id)
        .execution_options(populate_existing=True)
    )


async def pending_total(session: AsyncSession, payment_id: uuid.UUID) -> int:
    """What pending refunds of a payment have reserved."""
    total = await session.scalar(
        select(func.coalesce(func.sum(Refund.amount), 0)).where(
            Refund.payment_id == payment_id, Refund.status == RefundStatus.PENDING
        )
    )
    return int(total or 0)


async def for_payment(session: AsyncSession, payment_id: uuid.UUID) -> list[Refund]:
    """A payment's refunds, newest first."""
    rows = await session.scalars(
        select(Refund)
        .where(Refund.payment_id == payment_id)
        .order_by(Refund.created_at.desc(), Refund.id.desc())
    )
    return list(rows)


async def claim_lease(session: AsyncSession, refund_id: uuid.UUID, seconds: float) -> Refund | None:
    """Become the pending refund's only driver for `seconds`, if nobody is."""
    return await leases.claim(session, Refund, refund_id, seconds, (RefundStatus.PENDING,))


async def release_lease(session: AsyncSession, refund_id: uuid.UUID, lease: datetime) -> None:
    """Give the lease up, unless it expired and someone else holds it now."""
    await leases.release(session, Refund, refund_id, lease)


async def update_pending(
    session: AsyncSession,
    refund_id: uuid.UUID,
    values: dict[str, Any],
    *,
    to_status: RefundStatus | None,
) -> Refund | None:
    """Change a refund that is still pending; None when it is not (any more)."""
    return await transition(
        session, refund_id, values, from_status=RefundStatus.PENDING, to_status=to_status
    )


async def transition(
    session: AsyncSession,
    refund_id: uuid.UUID,
    values: dict[str, Any],
    *,
    from_status: RefundStatus,
    to_status: RefundStatus | None,
) -> Refund | None:
    """Change a refund that is in `from_status`; None when it is not (any more).

    The status test is in the UPDATE: of two concurrent changes from one status, one wins.
    """
    changes = dict(values, updated_at=func.now())
    if to_status is not None:
        changes["status"] = to_status
    return await session.scalar(
        update(Refund)
        .where(Refund.id == refund_id, Refund.status == from_status)
        .values(**changes)
        .returning(Refund)
        .execution_options(populate_existing=True)
    )


async def pending_ids(
    session: AsyncSession, *, older_than_seconds: float, limit: int
) -> list[uuid.UUID]:
    """Pending refunds untouched for a while and driven by nobody, oldest first."""
    rows = await session.scalars(
        select(Refund.id)
        .where(
            Refund.status == RefundStatus.PENDING,
            Refund.updated_at < func.now() - timedelta(seconds=older_than_seconds),
            or_(Refund.lease_expires_at.is_(None), Refund.lease_expires_at < func.now()),
        )
        .order_by(Refund.updated_at)
        .limit(limit)
    )
    return list(rows)


async def pending_holds(
    session: AsyncSession, *, after: uuid.UUID | None, limit: int
) -> list[tuple[uuid.UUID, str]]:
    """(refund id, hold id) of pending refunds that hold wallet money, by id after `after`."""
    statement = select(Refund.id, Refund.hold_id).where(
        Refund.status == RefundStatus.PENDING, Refund.hold_id.is_not(None)
    )
    if after is not None:
        statement = statement.where(Refund.id > after)
    rows = await session.execute(statement.order_by(Refund.id).limit(limit))
    return [(row.id, str(row.hold_id)) for row in rows]
