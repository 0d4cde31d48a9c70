"""Bodies of the Stripe webhook endpoint."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel

from payment_microservice.models import StripeEventOutcome

WebhookOutcome = Literal[StripeEventOutcome.APPLIED, StripeEventOutcome.IGNORED, "duplicate"]
"""What a delivery did: the event's recorded outcome, or `duplicate` (received before; nothing
was done again)."""


class WebhookReceipt(BaseModel):
    """What was done with an event; any 2xx tells Stripe to stop sending it."""

    received: bool = True
    outcome: WebhookOutcome
