"""Bodies of the statement endpoint."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, Field

from transactions_microservice.models import EntryType


class StatementFormat(StrEnum):
    """How a statement is sent."""

    JSON = "json"
    CSV = "csv"


class StatementLineRead(BaseModel):
    """One entry of the period, with the balance it left."""

    id: int = Field(description="Entry id (as in GET /transactions).", examples=[1042])
    created_at: datetime = Field(examples=["2026-03-02T10:15:00.123456Z"])
    type: EntryType = Field(examples=["transfer_out"])
    description: str | None = Field(default=None, examples=["Dinner"])
    counterparty_email: str | None = Field(
        default=None, description="The other side of a transfer.", examples=["bob@example.com"]
    )
    amount: int = Field(
        description="Signed minor units: credits positive, debits negative.", examples=[-2500]
    )
    balance_after: int = Field(
        description="The wallet's balance after this line, in minor units.", examples=[7500]
    )
    reference: str = Field(
        description="What the line belongs to (transfer id, payment id, refund, dispute).",
        examples=["8c1f6c1e-2f4e-4a7e-9a43-0d6c5b1e2f10"],
    )
    transaction_id: uuid.UUID


class StatementRead(BaseModel):
    """A wallet's statement: the balance before `from`, every line from `from` (included) to
    `to` (excluded) in posting order, the totals, and the balance at `to`."""

    currency: str = Field(examples=["USD"])
    from_: datetime = Field(alias="from", examples=["2026-03-01T00:00:00Z"])
    to: datetime = Field(examples=["2026-04-01T00:00:00Z"])
    opening_balance: int = Field(
        description="The balance just before `from`, in minor units.", examples=[10000]
    )
    lines: list[StatementLineRead]
    total_in: int = Field(description="Sum of the credits, in minor units.", examples=[0])
    total_out: int = Field(
        description="Sum of the debits, as a positive number of minor units.", examples=[2500]
    )
    closing_balance: int = Field(
        description="The balance just before `to`: opening_balance + total_in - total_out.",
        examples=[7500],
    )


CSV_COLUMNS = (
    "date",
    "type",
    "description",
    "counterparty",
    "amount",
    "balance_after",
    "currency",
    "reference",
)
"""The CSV's header row. Amounts are decimals in major units; the first row is the opening
balance, the last three the totals in and out and the closing balance."""

CSV_EXAMPLE = (
    "date,type,description,counterparty,amount,balance_after,currency,reference\r\n"
    "2026-03-01T00:00:00Z,opening_balance,Opening balance,,,100.00,USD,\r\n"
    "2026-03-02T10:15:00.123456Z,transfer_out,Dinner,bob@example.com,-25.00,75.00,USD,"
    "8c1f6c1e-2f4e-4a7e-9a43-0d6c5b1e2f10\r\n"
    "2026-04-01T00:00:00Z,total_in,Total in,,0.00,,USD,\r\n"
    "2026-04-01T00:00:00Z,total_out,Total out,,-25.00,,USD,\r\n"
    "2026-04-01T00:00:00Z,closing_balance,Closing balance,,,75.00,USD,\r\n"
)
