"""Background job: close open money requests past their expiry."""

from __future__ import annotations

import logging

from fastapi import FastAPI

from micropay_common.jobs import run_periodically
from transactions_microservice.requests import service
from transactions_microservice.state import TransactionsState

logger = logging.getLogger("micropay.transactions.requests")


async def money_request_expiry_job(app: FastAPI) -> None:
    """Every MONEY_REQUEST_SWEEP_INTERVAL_SECONDS, expire the open requests past their time."""
    state = TransactionsState.of(app)

    async def sweep() -> bool:
        async with state.sessionmaker() as session, session.begin():
            expired = await service.expire_overdue(session)
        if expired:
            logger.info("expired %d money requests", expired)
        return expired >= service.SWEEP_BATCH

    await run_periodically(
        "money request sweep",
        sweep,
        interval_seconds=state.settings.money_request_sweep_interval_seconds,
    )
