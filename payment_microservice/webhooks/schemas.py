"""Bodies of the Stripe webhook endpoint."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel


class WebhookReceipt(BaseModel):
    """What was done with an event; any 2xx tells Stripe to stop sending it."""

    received: bool = True
    outcome: Literal["applied", "ignored", "duplicate"]
