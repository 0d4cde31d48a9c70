"""Request and response bodies of money requests."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

from micropay_common.money import Amount, Currency
from micropay_common.pagination import Page
from transactions_microservice.models import MoneyRequestStatus


class MoneyRequestRole(StrEnum):
    """Which side of a request the caller lists."""

    PAYER = "payer"
    REQUESTER = "requester"


class MoneyRequestCreate(BaseModel):
    """Ask the owner of `from_email` to send the caller an amount."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "from_email": "bob@example.com",
                    "amount": 1250,
                    "currency": "USD",
                    "note": "Half of the concert tickets",
                }
            ]
        },
    )

    from_email: str = Field(min_length=3, max_length=320, examples=["bob@example.com"])
    amount: Amount
    currency: Currency
    note: str | None = Field(default=None, max_length=500, examples=["Half of the tickets"])


class MoneyRequestRead(BaseModel):
    """A money request; the two sides are named by email only (no answer carries another
    user's id), and nothing in it says whether the payer's email has an account."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": "5b0e4a53-8f57-4a51-9d5e-0d3c43a1b2f1",
                    "status": "open",
                    "requester_email": "alice@example.com",
                    "from_email": "bob@example.com",
                    "amount": 1250,
                    "currency": "USD",
                    "note": "Half of the concert tickets",
                    "transfer_id": None,
                    "created_at": "2026-12-05T10:00:00Z",
                    "expires_at": "2027-01-04T10:00:00Z",
                    "resolved_at": None,
                }
            ]
        }
    )

    id: uuid.UUID
    status: MoneyRequestStatus
    requester_email: str = Field(description="Who asks for the money (and receives it).")
    from_email: str = Field(description="Who is asked to pay, as the requester wrote it.")
    amount: int
    currency: str
    note: str | None
    transfer_id: uuid.UUID | None = Field(
        description="The transfer that paid it (a `reference` in both histories), once paid."
    )
    created_at: datetime
    expires_at: datetime
    resolved_at: datetime | None = Field(
        description="When it was paid, declined, cancelled or expired."
    )


class MoneyRequestPage(Page[MoneyRequestRead]):
    """A page of money requests, newest first."""
