"""Background job: expire overdue holds so their money is available again."""

from __future__ import annotations

import asyncio
import logging

from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from transactions_microservice.holds import service
from transactions_microservice.settings import TransactionsSettings

logger = logging.getLogger("micropay.transactions.holds")


async def hold_expiry_job(app: FastAPI) -> None:
    """Every HOLD_SWEEP_INTERVAL_SECONDS, release holds past their expiry.

    Postings also release a wallet's overdue holds when they lock it, so a wallet in use never
    waits for this sweep; the sweep covers wallets nobody touches.
    """
    settings: TransactionsSettings = app.state.settings
    sessionmaker: async_sessionmaker[AsyncSession] = app.state.sessionmaker
    while True:
        try:
            async with sessionmaker() as session:
                released = await service.release_expired_holds(session)
                await session.commit()
            if released:
                logger.info("released overdue holds of %d wallets", released)
                if released >= service.SWEEP_BATCH:
                    continue
        except Exception:
            # A database outage should not become a crash-and-restart loop; try next round.
            logger.warning("releasing overdue holds failed", exc_info=True)
        await asyncio.sleep(settings.hold_sweep_interval_seconds)
