"""Transaction-scoped advisory locks, to serialise work on one email across replicas."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession


async def lock_for_transaction(session: AsyncSession, name: str) -> None:
    """Wait for the advisory lock `name`; it is released when the transaction ends."""
    await session.execute(select(func.pg_advisory_xact_lock(func.hashtextextended(name, 0))))
