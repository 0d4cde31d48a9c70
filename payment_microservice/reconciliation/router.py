"""`POST /internal/reconcile`: run a reconciliation pass now (the payment service's account)."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from micropay_common.security import SERVICE_CALLER_RESPONSES, require_callers
from micropay_common.services import ServiceName
from payment_microservice.dependencies import ReconcilerDep
from payment_microservice.reconciliation.schemas import ReconcileReport, ReconcileRequest

router = APIRouter(
    tags=["internal"],
    # No other service calls it (the periodic job runs the same pass in-process); operators
    # and tests run it with the payment service's own account.
    dependencies=[Depends(require_callers(ServiceName.PAYMENT))],
    responses=SERVICE_CALLER_RESPONSES,
)


@router.post(
    "/internal/reconcile",
    response_model=ReconcileReport,
    summary="Settle unsettled payments and refunds from Stripe now",
)
async def reconcile(
    reconciler: ReconcilerDep, body: ReconcileRequest | None = None
) -> ReconcileReport:
    """One reconciliation pass, as the periodic job runs it; returns what it did."""
    return await reconciler.run_once(body.min_age_seconds if body else None)
