"""Request and response bodies of the refunds endpoints."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt

from micropay_common.money import MAX_AMOUNT
from payment_microservice.models import RefundStatus

RefundReason = Literal["duplicate", "fraudulent", "requested_by_customer"]


class RefundCreate(BaseModel):
    """A refund of part or all of a payment back to its card."""

    model_config = ConfigDict(extra="forbid")

    amount: StrictInt | None = Field(
        default=None,
        gt=0,
        le=MAX_AMOUNT,
        description="Minor units; the whole refundable remainder when left out.",
        examples=[500],
    )
    reason: RefundReason | None = None


class RefundRead(BaseModel):
    """A refund."""

    id: uuid.UUID
    payment_id: uuid.UUID
    amount: int
    currency: str
    status: RefundStatus
    reason: str | None = None
    failure_code: str | None = None
    created_at: datetime


class RefundList(BaseModel):
    """The refunds of a payment, newest first."""

    data: list[RefundRead]
