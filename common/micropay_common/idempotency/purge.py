"""Expired stored responses are deleted now and then, so that their keys count as new."""

from __future__ import annotations

import asyncio
import logging

from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from micropay_common.idempotency import repository

logger = logging.getLogger("micropay.idempotency")

PURGE_INTERVAL_SECONDS = 600.0


async def purge_expired_idempotency_keys(session: AsyncSession) -> int:
    """Delete expired key rows; the caller commits. Returns how many were deleted."""
    return await repository.delete_expired(session)


async def idempotency_purge_job(
    app: FastAPI, *, interval_seconds: float = PURGE_INTERVAL_SECONDS
) -> None:
    """Background job: purge expired idempotency keys now and then every interval."""
    sessionmaker: async_sessionmaker[AsyncSession] = app.state.sessionmaker
    while True:
        try:
            async with sessionmaker() as session:
                removed = await purge_expired_idempotency_keys(session)
                await session.commit()
            if removed:
                logger.info("purged %d expired idempotency keys", removed)
        except Exception:
            # A database outage should not turn into a crash-and-restart loop; try next round.
            logger.warning("purging expired idempotency keys failed", exc_info=True)
        await asyncio.sleep(interval_seconds)
