"""Background job: release the money of invitations nobody accepted in time."""

from __future__ import annotations

import logging

from fastapi import FastAPI

from micropay_common.jobs import run_periodically
from transactions_microservice.invitations import service
from transactions_microservice.state import TransactionsState

logger = logging.getLogger("micropay.transactions.invitations")


async def invitation_expiry_job(app: FastAPI) -> None:
    """Every INVITATION_SWEEP_INTERVAL_SECONDS, expire pending invitations past their time."""
    state = TransactionsState.of(app)

    async def sweep() -> bool:
        async with state.sessionmaker() as session, session.begin():
            expired = await service.expire_overdue(session)
        if expired:
            logger.info("expired %d transfer invitations", expired)
        return expired >= service.SWEEP_BATCH

    await run_periodically(
        "invitation sweep",
        sweep,
        interval_seconds=state.settings.invitation_sweep_interval_seconds,
    )
