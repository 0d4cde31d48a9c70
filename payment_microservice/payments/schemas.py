"""Request and response bodies of the payments endpoints."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from micropay_common.money import Amount
from micropay_common.pagination import Page
from payment_microservice.models import PaymentStatus


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


class PaymentList(Page[PaymentRead]):
    """A page of payments, newest first."""
