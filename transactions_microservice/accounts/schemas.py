"""Request and response bodies of the accounts endpoints."""

from __future__ import annotations

from pydantic import BaseModel, Field


class BalanceRead(BaseModel):
    """One wallet: what can be sent, what is posted, reserved by holds, and still settling."""

    currency: str = Field(examples=["USD"])
    available: int = Field(
        description="What can be sent now: balance - held - pending, in minor units.",
        examples=[1500],
    )
    balance: int = Field(description="Posted balance, in minor units.", examples=[2000])
    held: int = Field(description="Reserved by active holds, in minor units.", examples=[500])
    pending: int = Field(
        default=0,
        description=(
            "Card money still settling: top-ups 3-D Secure did not authenticate, sendable once "
            "CARD_FUNDS_SETTLE_SECONDS have passed (GET /transactions/limits). It can be "
            "refunded to its card meanwhile, or taken back by a dispute."
        ),
        examples=[0],
    )
    owed: int = Field(
        default=0,
        description="What you owe in this currency (a disputed top-up the wallet could not "
        "cover), in minor units. Money coming in pays it first; nothing can be sent until it "
        "is 0.",
        examples=[0],
    )


class BalancesRead(BaseModel):
    """The caller's wallets, one per currency."""

    balances: list[BalanceRead]
