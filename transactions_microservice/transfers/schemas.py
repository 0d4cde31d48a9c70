"""Request and response bodies of transfers."""

from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from micropay_common.money import Amount, Currency


class TransferCreate(BaseModel):
    """Send money from the caller's wallet to another user's, by their email."""

    model_config = ConfigDict(extra="forbid")

    to_email: str = Field(min_length=3, max_length=320, examples=["bob@example.com"])
    amount: Amount
    currency: Currency
    description: str | None = Field(default=None, max_length=500, examples=["Dinner"])
    invite: bool = Field(
        default=False,
        description="When `to_email` has no account: hold the amount and invite the address "
        "(202, a pending transfer that completes when it signs up) instead of refusing.",
    )


class TransferRead(BaseModel):
    """A completed transfer; the recipient is named by the email the sender gave, never by an
    id (no answer carries another user's id)."""

    id: uuid.UUID = Field(description="The transfer; the `reference` of both history lines.")
    amount: int
    currency: str
    to_email: str
    description: str | None
    created_at: datetime
