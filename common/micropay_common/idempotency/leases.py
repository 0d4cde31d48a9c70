"""SQL of the lease on a keyed resource's row: who drives it at the outside provider now.

Whoever holds an unexpired lease is the row's only driver (the request that created it, a
retry with the same key, or a reconciler); a crashed holder's lease simply runs out. Lease
times are taken on PostgreSQL's clock, never the process's.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any, ClassVar, Protocol, TypeVar

from sqlalchemy import ColumnElement, func, or_, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped


class Leased(Protocol):
    """A model whose rows have a status and a lease (`lease_expires_at`, NULL when free)."""

    # Mapped attributes are descriptors on the class: `Model.id` is the column, `row.id` the
    # value. ClassVar says so, so that models match and both kinds of access are typed.
    id: ClassVar[Mapped[uuid.UUID]]
    status: ClassVar[Mapped[str]]
    lease_expires_at: ClassVar[Mapped[datetime | None]]


LeasedT = TypeVar("LeasedT", bound=Leased)


def lease_until(seconds: float) -> ColumnElement[Any]:
    """The end of a lease taken now, for `lease_expires_at` in an INSERT or UPDATE."""
    return func.now() + timedelta(seconds=seconds)


async def claim(
    session: AsyncSession,
    model: type[LeasedT],
    row_id: uuid.UUID,
    seconds: float,
    statuses: Sequence[str],
) -> LeasedT | None:
    """Become the row's only driver for `seconds`, if it is in `statuses` and nobody is."""
    return await session.scalar(
        update(model)
        .where(
            model.id == row_id,
            model.status.in_(statuses),
            or_(model.lease_expires_at.is_(None), model.lease_expires_at < func.now()),
        )
        .values(lease_expires_at=lease_until(seconds))
        .returning(model)
        .execution_options(populate_existing=True)
    )


async def release(
    session: AsyncSession, model: type[LeasedT], row_id: uuid.UUID, lease: datetime
) -> None:
    """Give the lease up, unless it already expired and someone else holds it now."""
    await session.execute(
        update(model)
        .where(model.id == row_id, model.lease_expires_at == lease)
        .values(lease_expires_at=None)
    )
