"""Expired stored responses are deleted now and then, so that their keys count as new."""

from __future__ import annotations

import logging

from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncSession

from micropay_common.idempotency import repository
from micropay_common.jobs import run_periodically
from micropay_common.state import AppState

logger = logging.getLogger("micropay.idempotency")

PURGE_INTERVAL_SECONDS = 600.0


async def purge_expired_idempotency_keys(session: AsyncSession) -> int:
    """Delete expired key rows; the caller commits. Returns how many were deleted."""
    return await repository.delete_expired(session)


async def idempotency_purge_job(
    app: FastAPI, *, interval_seconds: float = PURGE_INTERVAL_SECONDS
) -> None:
    """Background job: purge expired idempotency keys now and then every interval."""
    state = AppState.of(app)

    async def purge() -> None:
        async with state.sessionmaker() as session, session.begin():
            removed = await purge_expired_idempotency_keys(session)
        if removed:
            logger.info("purged %d expired idempotency keys", removed)

    await run_periodically("idempotency key purge", purge, interval_seconds=interval_seconds)
