"""Request and response bodies of the payments endpoints."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from micropay_common.money import Amount
from micropay_common.pagination import Page
from payment_microservice.models import DisputeFunds, DisputeStatus, PaymentStatus


class PaymentCreate(BaseModel):
    """A top-up of the caller's wallet by card."""

    model_config = ConfigDict(extra="forbid")

    amount: Amount
    # Which currencies may be topped up is configuration (PAYMENT_AMOUNT_LIMITS), checked by
    # the service with its own problem type; here only the shape.
    currency: str = Field(
        pattern=r"^[A-Za-z]{3}$", description="ISO 4217 code, e.g. USD.", examples=["USD"]
    )

    @field_validator("currency")
    @classmethod
    def _upper(cls, value: str) -> str:
        return value.upper()

    payment_method: str = Field(
        min_length=1,
        max_length=255,
        pattern=r"^[A-Za-z0-9_]+$",
        description="A Stripe PaymentMethod id (e.g. `pm_card_visa` in test mode).",
        examples=["pm_card_visa"],
    )
    description: str | None = Field(default=None, max_length=500)


class DisputeSummary(BaseModel):
    """A card holder's dispute of the payment, as Stripe last reported it."""

    status: DisputeStatus = Field(description="`open` until Stripe decides; `won` or `lost`.")
    amount: int = Field(description="The disputed amount, in minor units.", examples=[1000])
    currency: str = Field(examples=["USD"])
    reason: str | None = Field(default=None, description="Stripe's reason, e.g. `fraudulent`.")
    funds: DisputeFunds = Field(
        description="`withdrawn`: Stripe took the amount back (and so did the wallet, as far as "
        "it could); `reinstated`: given back after a won dispute."
    )
    created_at: datetime


class PaymentRead(BaseModel):
    """A payment as its owner sees it."""

    id: uuid.UUID
    status: PaymentStatus
    amount: int
    currency: str
    amount_refunded: int
    description: str | None = None
    created_at: datetime
    failure_code: str | None = None
    decline_code: str | None = None
    next_action: dict[str, Any] | None = Field(
        default=None, description="What the customer must do (3-D Secure) when requires_action."
    )
    client_secret: str | None = Field(
        default=None,
        description="For Stripe.js to complete the action; only while requires_action.",
    )
    dispute: DisputeSummary | None = Field(
        default=None,
        description="The card holder's dispute of this payment, if any (the latest); null on "
        "the answer to `POST /payments`.",
    )


class PaymentList(Page[PaymentRead]):
    """A page of payments, newest first."""
