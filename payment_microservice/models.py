"""The payment service's tables (PostgreSQL.sql, section `payments`), as SQLAlchemy models."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Index,
    MetaData,
    Text,
    UniqueConstraint,
    false,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from micropay_common.constraints import check_in
from micropay_common.services import SERVICES, ServiceName

SCHEMA = SERVICES[ServiceName.PAYMENT].schema


class PaymentStatus(StrEnum):
    """Where a top-up stands; `processing` and `requires_action` are not settled yet."""

    PROCESSING = "processing"
    """Recorded before Stripe is called; Stripe has not decided yet."""
    REQUIRES_ACTION = "requires_action"
    """The customer must authenticate (3-D Secure)."""
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELED = "canceled"
    """The buyer left PayPal without approving (or never came back); no money moved."""


class PaymentProvider(StrEnum):
    """Who takes the money of a top-up."""

    STRIPE = "stripe"
    """A card, through Stripe."""
    PAYPAL = "paypal"
    """PayPal Checkout: the buyer approves an order at PayPal, and we capture it."""


class RefundStatus(StrEnum):
    """Where a refund stands."""

    PENDING = "pending"
    """Its amount is reserved on the payment; Stripe (or the wallet hold) has not answered."""
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class RefundOrigin(StrEnum):
    """Who started a refund."""

    API = "api"
    """A caller of `POST /payments/{id}/refunds`."""
    STRIPE = "stripe"
    """Stripe directly (the dashboard); learned from its webhooks."""
    PAYPAL = "paypal"
    """PayPal directly (a refund or reversal of a capture); learned from its webhooks."""


class DisputeStatus(StrEnum):
    """Where a dispute of a payment stands; `won` and `lost` are final."""

    OPEN = "open"
    """Stripe has not decided (`needs_response`, `under_review`, an inquiry's `warning_*`)."""
    WON = "won"
    """Decided for us, or an inquiry Stripe closed (`warning_closed`): the money stays ours."""
    LOST = "lost"


class DisputeFunds(StrEnum):
    """Where a dispute's money stands: withdrawn once at most, reinstated once at most."""

    NONE = "none"
    """Stripe has not withdrawn the disputed amount."""
    WITHDRAWN = "withdrawn"
    REINSTATED = "reinstated"
    """Withdrawn, then given back (the dispute was won)."""


class StripeEventOutcome(StrEnum):
    """What applying a recorded Stripe (or PayPal) webhook event did."""

    APPLIED = "applied"
    IGNORED = "ignored"
    """Nothing of ours to change (an unknown payment, a type we do not act on)."""


class Base(DeclarativeBase):
    """Models of the `payments` schema."""

    metadata = MetaData(schema=SCHEMA)


class Payment(Base):
    """A wallet top-up by card (Stripe) or through PayPal Checkout."""

    __tablename__ = "payments"
    __table_args__ = (
        CheckConstraint("amount > 0", name="payments_amount_check"),
        CheckConstraint("currency ~ '^[A-Z]{3}$'", name="payments_currency_check"),
        CheckConstraint(
            "amount_refunded >= 0 AND amount_refunded <= amount",
            name="payments_amount_refunded_check",
        ),
        check_in("status", PaymentStatus, name="payments_status_check"),
        check_in("provider", PaymentProvider, name="payments_provider_check"),
        CheckConstraint(
            "provider <> 'stripe' OR payment_method IS NOT NULL",
            name="payments_stripe_method_check",
        ),
        CheckConstraint(
            "provider <> 'paypal' OR (return_url IS NOT NULL AND cancel_url IS NOT NULL)",
            name="payments_paypal_urls_check",
        ),
        UniqueConstraint("user_id", "idempotency_key", name="payments_user_idempotency_key"),
        UniqueConstraint("stripe_payment_intent_id", name="payments_stripe_payment_intent_key"),
        UniqueConstraint("paypal_order_id", name="payments_paypal_order_key"),
        Index("payments_user_created_idx", "user_id", text("created_at DESC"), text("id DESC")),
        Index("payments_created_idx", text("created_at DESC"), text("id DESC")),
        Index(
            "payments_unsettled_idx",
            "updated_at",
            postgresql_where=text("status IN ('processing', 'requires_action')"),
        ),
        Index("payments_stripe_charge_idx", "stripe_charge_id"),
        Index("payments_paypal_capture_idx", "paypal_capture_id"),
    )

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    user_id: Mapped[str] = mapped_column(Text)
    amount: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(Text)
    amount_refunded: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))
    status: Mapped[str] = mapped_column(Text)
    provider: Mapped[str] = mapped_column(Text, server_default=text("'stripe'"))
    payment_method: Mapped[str | None] = mapped_column(Text)
    """The Stripe PaymentMethod (cards only)."""
    description: Mapped[str | None] = mapped_column(Text)
    idempotency_key: Mapped[str] = mapped_column(Text)
    request_hash: Mapped[str] = mapped_column(Text)
    stripe_payment_intent_id: Mapped[str | None] = mapped_column(Text)
    stripe_charge_id: Mapped[str | None] = mapped_column(Text)
    client_secret: Mapped[str | None] = mapped_column(Text)
    next_action: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    failure_code: Mapped[str | None] = mapped_column(Text)
    failure_message: Mapped[str | None] = mapped_column(Text)
    decline_code: Mapped[str | None] = mapped_column(Text)
    three_d_secure: Mapped[bool] = mapped_column(Boolean, server_default=false())
    """3-D Secure authenticated the payment (its money may be spent at once)."""
    paypal_order_id: Mapped[str | None] = mapped_column(Text)
    paypal_capture_id: Mapped[str | None] = mapped_column(Text)
    return_url: Mapped[str | None] = mapped_column(Text)
    """Where PayPal sends the buyer after approving (PayPal payments)."""
    cancel_url: Mapped[str | None] = mapped_column(Text)
    """Where PayPal sends the buyer who cancels (PayPal payments)."""
    lease_expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class Refund(Base):
    """Money given back to the card of a payment (and taken from the wallet)."""

    __tablename__ = "refunds"
    __table_args__ = (
        CheckConstraint("amount > 0", name="refunds_amount_check"),
        check_in("status", RefundStatus, name="refunds_status_check"),
        check_in("origin", RefundOrigin, name="refunds_origin_check"),
        CheckConstraint(
            "origin <> 'api' OR (requested_by IS NOT NULL AND idempotency_key IS NOT NULL"
            " AND request_hash IS NOT NULL)",
            name="refunds_api_request_check",
        ),
        UniqueConstraint(
            "requested_by", "idempotency_key", name="refunds_requester_idempotency_key"
        ),
        UniqueConstraint("stripe_refund_id", name="refunds_stripe_refund_key"),
        UniqueConstraint("paypal_refund_id", name="refunds_paypal_refund_key"),
        Index("refunds_payment_idx", "payment_id", text("created_at DESC")),
        Index("refunds_pending_idx", "updated_at", postgresql_where=text("status = 'pending'")),
    )

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    payment_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), ForeignKey(Payment.id))
    amount: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(Text)
    origin: Mapped[str] = mapped_column(Text)
    reason: Mapped[str | None] = mapped_column(Text)
    requested_by: Mapped[str | None] = mapped_column(Text)
    idempotency_key: Mapped[str | None] = mapped_column(Text)
    request_hash: Mapped[str | None] = mapped_column(Text)
    hold_id: Mapped[str | None] = mapped_column(Text)
    stripe_refund_id: Mapped[str | None] = mapped_column(Text)
    paypal_refund_id: Mapped[str | None] = mapped_column(Text)
    failure_code: Mapped[str | None] = mapped_column(Text)
    failure_message: Mapped[str | None] = mapped_column(Text)
    lease_expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class Dispute(Base):
    """A card holder's dispute of a payment's charge, as Stripe reports it."""

    __tablename__ = "disputes"
    __table_args__ = (
        CheckConstraint("amount > 0", name="disputes_amount_check"),
        CheckConstraint("currency ~ '^[A-Z]{3}$'", name="disputes_currency_check"),
        CheckConstraint(
            "fee >= 0 AND fee_returned >= 0 AND fee_returned <= fee", name="disputes_fee_check"
        ),
        check_in("status", DisputeStatus, name="disputes_status_check"),
        check_in("funds", DisputeFunds, name="disputes_funds_check"),
        UniqueConstraint("stripe_dispute_id", name="disputes_stripe_dispute_key"),
        Index("disputes_payment_idx", "payment_id", text("created_at DESC")),
    )

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    payment_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), ForeignKey(Payment.id))
    stripe_dispute_id: Mapped[str] = mapped_column(Text)
    amount: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(Text)
    reason: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(Text)
    stripe_status: Mapped[str] = mapped_column(Text)
    """Stripe's own status as last retrieved (`needs_response`, `under_review`, ...)."""
    funds: Mapped[str] = mapped_column(Text)
    fee: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))
    """Stripe's fee for the dispute (charged to the platform), in `fee_currency`."""
    fee_currency: Mapped[str | None] = mapped_column(Text)
    """The currency of Stripe's balance (its balance transactions), set with the fee."""
    fee_returned: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    funds_withdrawn_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    funds_reinstated_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    closed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class StripeEvent(Base):
    """A verified Stripe webhook event, recorded with its effect."""

    __tablename__ = "stripe_events"
    __table_args__ = (check_in("outcome", StripeEventOutcome, name="stripe_events_outcome_check"),)

    id: Mapped[str] = mapped_column(Text, primary_key=True)
    type: Mapped[str] = mapped_column(Text)
    outcome: Mapped[str] = mapped_column(Text)
    payload: Mapped[dict[str, Any]] = mapped_column(JSONB)
    received_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )


class PayPalEvent(Base):
    """A verified PayPal webhook event, recorded with its effect."""

    __tablename__ = "paypal_events"
    __table_args__ = (check_in("outcome", StripeEventOutcome, name="paypal_events_outcome_check"),)

    id: Mapped[str] = mapped_column(Text, primary_key=True)
    type: Mapped[str] = mapped_column(Text)
    outcome: Mapped[str] = mapped_column(Text)
    payload: Mapped[dict[str, Any]] = mapped_column(JSONB)
    received_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )
