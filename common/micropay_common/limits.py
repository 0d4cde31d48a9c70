"""The top-up allowance on the wire: counted by the payment service, shown by two services.

`GET /payments/limits` answers it to the user, `GET /internal/limits/top-ups` to the
transactions service, which shows it beside the transfer allowances at `GET /transactions/limits`;
all three use these models, so the answers cannot drift apart.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field


class TopUpAllowance(BaseModel):
    """What the user may still top up today in one currency."""

    currency: str = Field(examples=["USD"])
    per_day: int = Field(description="Most that may be topped up per UTC day.", examples=[1000000])
    topped_up_today: int = Field(
        description="Top-ups since the day began (UTC), failed ones not counted.", examples=[5000]
    )
    remaining_today: int = Field(description="per_day - topped_up_today, never below 0.")
    resets_at: datetime = Field(description="When the day's count starts again (UTC midnight).")


class TopUpAllowances(BaseModel):
    """The user's top-up allowances, per currency with a daily limit."""

    top_ups: list[TopUpAllowance]
