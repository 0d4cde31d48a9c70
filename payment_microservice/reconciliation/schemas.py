"""Bodies of the reconciliation endpoint."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class ReconcileRequest(BaseModel):
    """Optional overrides of one reconciliation pass."""

    model_config = ConfigDict(extra="forbid")

    min_age_seconds: float | None = Field(
        default=None,
        ge=0,
        le=366 * 86_400,
        description="Only rows untouched this long (RECONCILE_MIN_AGE_SECONDS when left out).",
    )


class ReconcileReport(BaseModel):
    """What one pass found and settled."""

    payments_checked: int = 0
    payments_settled: int = 0
    refunds_checked: int = 0
    refunds_settled: int = 0
    holds_renewed: int = 0
    """Wallet holds of pending refunds kept for another HOLD_TTL_SECONDS."""
    errors: int = 0
