"""SQL of the lease a driver holds on a payment or a refund while it talks to Stripe.

Whoever holds an unexpired lease is the row's only driver (the request that created it, a
retry with the same key, or the reconciler); a crashed holder's lease simply runs out.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import TypeVar

from sqlalchemy import func, or_, update
from sqlalchemy.ext.asyncio import AsyncSession

from payment_microservice.models import Payment, Refund

Leased = TypeVar("Leased", Payment, Refund)


async def claim(
    session: AsyncSession,
    model: type[Leased],
    row_id: uuid.UUID,
    seconds: float,
    statuses: Sequence[str],
) -> Leased | None:
    """Become the row's only driver for `seconds`, if it is in `statuses` and nobody is."""
    return await session.scalar(
        update(model)
        .where(
            model.id == row_id,
            model.status.in_(statuses),
            or_(model.lease_expires_at.is_(None), model.lease_expires_at < func.now()),
        )
        .values(lease_expires_at=func.now() + timedelta(seconds=seconds))
        .returning(model)
        .execution_options(populate_existing=True)
    )


async def release(
    session: AsyncSession, model: type[Leased], row_id: uuid.UUID, lease: datetime
) -> None:
    """Give the lease up, unless it already expired and someone else holds it now."""
    await session.execute(
        update(model)
        .where(model.id == row_id, model.lease_expires_at == lease)
        .values(lease_expires_at=None)
    )
