"""Background job: settle what requests left unsettled, every RECONCILE_INTERVAL_SECONDS."""

from __future__ import annotations

from fastapi import FastAPI

from micropay_common.jobs import run_periodically
from payment_microservice.state import PaymentState


async def reconcile_job(app: FastAPI) -> None:
    """A reconciliation pass every RECONCILE_INTERVAL_SECONDS, the first one interval in."""
    state = PaymentState.of(app)

    async def reconcile_pass() -> None:
        await state.reconciler.run_once()

    interval = state.settings.reconcile_interval_seconds
    await run_periodically(
        "reconciliation",
        reconcile_pass,
        interval_seconds=interval,
        first_run_after_seconds=interval,
    )
