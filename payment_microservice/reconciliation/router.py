"""`POST /internal/reconcile`: run a reconciliation pass now (services group)."""

from __future__ import annotations

from fastapi import APIRouter, Request

from micropay_common.security import ServiceCaller
from payment_microservice.reconciliation.schemas import ReconcileReport, ReconcileRequest
from payment_microservice.reconciliation.service import Reconciler

router = APIRouter(tags=["internal"])


@router.post(
    "/internal/reconcile",
    response_model=ReconcileReport,
    summary="Settle unsettled payments and refunds from Stripe now",
)
async def reconcile(
    request: Request, caller: ServiceCaller, body: ReconcileRequest | None = None
) -> ReconcileReport:
    """One reconciliation pass, as the periodic job runs it; returns what it did."""
    del caller
    reconciler: Reconciler = request.app.state.reconciler
    return await reconciler.run_once(body.min_age_seconds if body else None)
