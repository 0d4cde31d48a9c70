"""Request and response bodies of the payments endpoints."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import AnyHttpUrl, BaseModel, ConfigDict, Field, field_validator, model_validator

from micropay_common.money import Amount
from micropay_common.pagination import Page
from payment_microservice.models import (
    DisputeFunds,
    DisputeStatus,
    PaymentProvider,
    PaymentStatus,
)


class PaymentCreate(BaseModel):
    """A top-up of the caller's wallet by card (Stripe) or through PayPal Checkout."""

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

    provider: PaymentProvider = Field(
        default=PaymentProvider.STRIPE,
        description="`stripe` (a card; the default) or `paypal` (the buyer approves at PayPal).",
    )
    payment_method: str | None = Field(
        default=None,
        min_length=1,
        max_length=255,
        pattern=r"^[A-Za-z0-9_]+$",
        description="A Stripe PaymentMethod id (e.g. `pm_card_visa` in test mode); cards only.",
        examples=["pm_card_visa"],
    )
    return_url: AnyHttpUrl | None = Field(
        default=None,
        description="PayPal only: where PayPal sends the buyer after approving, with `token` "
        "(the order id) and `PayerID`; then call `POST /payments/{id}/confirm`.",
    )
    cancel_url: AnyHttpUrl | None = Field(
        default=None,
        description="PayPal only: where PayPal sends the buyer who cancels; then call "
        "`POST /payments/{id}/cancel`.",
    )
    description: str | None = Field(default=None, max_length=500)

    @model_validator(mode="after")
    def _fits_provider(self) -> PaymentCreate:
        if self.provider == PaymentProvider.STRIPE:
            if self.payment_method is None:
                raise ValueError("payment_method is required for a card payment")
            if self.return_url is not None or self.cancel_url is not None:
                raise ValueError("return_url and cancel_url are for PayPal payments")
        else:
            if self.payment_method is not None:
                raise ValueError("payment_method is for card payments")
            if self.return_url is None or self.cancel_url is None:
                raise ValueError("return_url and cancel_url are required for a PayPal payment")
            for url in (self.return_url, self.cancel_url):
                if len(str(url)) > 2000:
                    raise ValueError("return_url and cancel_url are at most 2000 characters")
        return self


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
    provider: PaymentProvider = PaymentProvider.STRIPE
    amount: int
    currency: str
    amount_refunded: int
    description: str | None = None
    created_at: datetime
    failure_code: str | None = None
    decline_code: str | None = None
    next_action: dict[str, Any] | None = Field(
        default=None,
        description="What the customer must do when requires_action: 3-D Secure for a card, "
        "or `redirect_to_url` to PayPal's approval page.",
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
