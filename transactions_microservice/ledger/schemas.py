"""Response bodies of the ledger endpoints."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from micropay_common.pagination import Page

LineType = Literal["top_up", "transfer_in", "transfer_out", "refund"]


class LineRead(BaseModel):
    """One line of the caller's ledger history."""

    id: int = Field(description="Line id; pass it as `starting_after` for the next page.")
    transaction_id: uuid.UUID = Field(
        description="The ledger transaction (for a transfer, its id)."
    )
    type: LineType
    amount: int = Field(description="Signed minor units: credits positive, debits negative.")
    currency: str
    balance_after: int = Field(description="The wallet's balance after this line.")
    reference: str = Field(
        description="What the line belongs to: the transfer id, the payment id of a top-up, "
        "or the refund's reference."
    )
    description: str | None = None
    counterparty_email: str | None = Field(
        default=None, description="The other side of a transfer."
    )
    created_at: datetime


class LinePage(Page[LineRead]):
    """A page of lines, newest first."""


class LedgerCheckRead(BaseModel):
    """The invariant check's outcome; `violations` lists up to 100 offenders per check."""

    ok: bool
    checked_at: datetime
    counts: dict[str, int]
    violations: dict[str, list[dict[str, Any]]]
