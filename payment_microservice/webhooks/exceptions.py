"""Problems the Stripe webhook endpoint answers with."""

from __future__ import annotations

from micropay_common.errors import BadRequest


class InvalidSignature(BadRequest):
    """400: the Stripe-Signature header is missing, wrong or too old."""

    type = "invalid_signature"
    title = "Invalid webhook signature"


class InvalidPayload(BadRequest):
    """400: the body is not a Stripe event."""

    type = "invalid_payload"
    title = "Invalid webhook payload"
