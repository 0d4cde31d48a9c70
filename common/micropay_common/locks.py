"""Transaction-scoped advisory locks: serialise work on one key (a user, an email) everywhere."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession


async def lock_for_transaction(session: AsyncSession, name: str) -> None:
    """Wait for the advisory lock `name`; it is released when the transaction ends."""
    # Advisory locks are the database's, shared by every schema: callers prefix `name` with
    # what it guards ("notifications.devices:<user id>"), so unrelated work never waits.
    await session.execute(select(func.pg_advisory_xact_lock(func.hashtextextended(name, 0))))
