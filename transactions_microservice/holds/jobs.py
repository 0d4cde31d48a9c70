"""Background job: expire overdue holds so their money is available again."""

from __future__ import annotations

import logging

from fastapi import FastAPI

from micropay_common.jobs import run_periodically
from transactions_microservice.holds import service
from transactions_microservice.state import TransactionsState

logger = logging.getLogger("micropay.transactions.holds")


async def hold_expiry_job(app: FastAPI) -> None:
    """Every HOLD_SWEEP_INTERVAL_SECONDS, release holds past their expiry.

    Postings also release a wallet's overdue holds when they lock it, so a wallet in use never
    waits for this sweep; the sweep covers wallets nobody touches.
    """
    state = TransactionsState.of(app)

    async def sweep() -> bool:
        async with state.sessionmaker() as session, session.begin():
            released = await service.release_expired_holds(session)
        if released:
            logger.info("released overdue holds of %d wallets", released)
        return released >= service.SWEEP_BATCH

    await run_periodically(
        "hold sweep", sweep, interval_seconds=state.settings.hold_sweep_interval_seconds
    )
