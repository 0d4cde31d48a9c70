"""Response bodies of the ledger endpoints."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from micropay_common.pagination import Page
from transactions_microservice.models import EntryType


class EntryRead(BaseModel):
    """One entry of the caller's ledger history."""

    id: int = Field(description="Entry id; pass it as `starting_after` for the next page.")
    transaction_id: uuid.UUID = Field(
        description="The ledger transaction (for a transfer, its id)."
    )
    type: EntryType
    amount: int = Field(description="Signed minor units: credits positive, debits negative.")
    currency: str
    balance_after: int = Field(description="The wallet's balance after this entry.")
    reference: str = Field(
        description="What the entry belongs to: the transfer id, the payment id of a top-up, "
        "the refund's reference, the dispute id; for a debt paid with money a hold stopped "
        "reserving, the hold's reference (for a refund's hold, the refund's)."
    )
    description: str | None = None
    counterparty_email: str | None = Field(
        default=None, description="The other side of a transfer."
    )
    created_at: datetime


class EntryPage(Page[EntryRead]):
    """A page of entries, newest first."""


class LedgerCheckRead(BaseModel):
    """The invariant check's outcome; `violations` lists up to 100 offenders per check."""

    ok: bool
    checked_at: datetime
    counts: dict[str, int]
    violations: dict[str, list[dict[str, Any]]]
