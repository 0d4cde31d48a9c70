"""SQL of the disputes table."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from payment_microservice.models import Dispute


async def insert_if_new(session: AsyncSession, values: dict[str, Any]) -> Dispute | None:
    """Insert a dispute unless its Stripe id is recorded; None when it was."""
    inserted = await session.scalars(
        insert(Dispute)
        .values(**values)
        .on_conflict_do_nothing(constraint="disputes_stripe_dispute_key")
        .returning(Dispute)
    )
    return inserted.one_or_none()


async def get_by_stripe_id(session: AsyncSession, stripe_dispute_id: str) -> Dispute | None:
    """The dispute recorded for a Stripe dispute."""
    return await session.scalar(
        select(Dispute)
        .where(Dispute.stripe_dispute_id == stripe_dispute_id)
        .execution_options(populate_existing=True)
    )


async def transition(
    session: AsyncSession,
    dispute_id: uuid.UUID,
    values: dict[str, Any],
    *,
    column: str,
    from_value: str,
    stamp: str,
) -> Dispute | None:
    """Change a dispute whose `column` (status or funds) is `from_value`, setting the time
    column `stamp` to now; None when it is not in that state (any more).

    The test is in the UPDATE: of two concurrent moves from one state, one wins.
    """
    return await session.scalar(
        update(Dispute)
        .where(Dispute.id == dispute_id, getattr(Dispute, column) == from_value)
        .values(**values, **{stamp: func.now()}, updated_at=func.now())
        .returning(Dispute)
        .execution_options(populate_existing=True)
    )


async def set_stripe_status(
    session: AsyncSession, dispute_id: uuid.UUID, stripe_status: str
) -> None:
    """Record Stripe's own status as last retrieved."""
    await session.execute(
        update(Dispute)
        .where(Dispute.id == dispute_id, Dispute.stripe_status != stripe_status)
        .values(stripe_status=stripe_status, updated_at=func.now())
    )
