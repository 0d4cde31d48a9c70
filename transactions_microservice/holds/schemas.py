"""Request and response bodies of holds."""

from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from micropay_common.money import Amount, Currency
from transactions_microservice.models import HoldStatus


class HoldCreate(BaseModel):
    """Reserve money on a user's wallet."""

    model_config = ConfigDict(extra="forbid")

    user_id: str = Field(min_length=1, max_length=128)
    amount: Amount
    currency: Currency
    reference: str = Field(
        min_length=1,
        max_length=255,
        description="Unique per hold (for example the refund id): a create repeated with the "
        "same reference returns the first hold instead of making another.",
        examples=["re_123"],
    )


class HoldRead(BaseModel):
    """A hold and what became of it."""

    id: uuid.UUID
    user_id: str
    amount: int
    currency: str
    reference: str
    status: HoldStatus
    expires_at: datetime
    transaction_id: uuid.UUID | None = Field(
        description="The refund transaction a captured hold posted."
    )
    created_at: datetime
    resolved_at: datetime | None
