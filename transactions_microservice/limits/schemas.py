"""Response bodies of the limits endpoint."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from micropay_common.limits import TopUpAllowance


class TransferAllowance(BaseModel):
    """What the caller may still send in one currency."""

    currency: str = Field(examples=["USD"])
    per_transaction: int | None = Field(
        description="Largest single transfer, in minor units; null when there is no such limit.",
        examples=[250000],
    )
    per_day: int | None = Field(
        description="Most that may be sent per UTC day, in minor units; null when unlimited.",
        examples=[500000],
    )
    sent_today: int = Field(
        description="Sent since the day began (UTC), invitations still pending included.",
        examples=[1200],
    )
    remaining_today: int | None = Field(
        description="per_day - sent_today (never below 0); null when unlimited.",
        examples=[498800],
    )
    resets_at: datetime = Field(description="When the day's count starts again (UTC midnight).")


class LimitsRead(BaseModel):
    """The caller's transfer and top-up allowances, and how long card money waits to be sent."""

    transfers: list[TransferAllowance]
    top_ups: list[TopUpAllowance] | None = Field(
        description=(
            "What the caller may still top up today, per currency with a daily limit: the "
            "payment service's own count, as `GET /payments/limits` answers it. Null when the "
            "payment service could not be asked (down, or too slow): the transfer allowances "
            "are still exact; ask again, or ask `GET /payments/limits`."
        ),
    )
    card_funds_settle_seconds: int = Field(
        description=(
            "Money from a card top-up that 3-D Secure did not authenticate can be sent on only "
            "this long after the top-up (0: at once). It shows as `pending` in the balance."
        ),
        examples=[0],
    )
