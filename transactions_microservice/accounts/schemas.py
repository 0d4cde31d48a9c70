"""Request and response bodies of the accounts endpoints."""

from __future__ import annotations

from pydantic import BaseModel, Field


class BalanceRead(BaseModel):
    """One wallet: what can be spent, what is posted, what is reserved by holds."""

    currency: str = Field(examples=["USD"])
    available: int = Field(description="balance - held, in minor units.", examples=[1500])
    balance: int = Field(description="Posted balance, in minor units.", examples=[2000])
    held: int = Field(description="Reserved by active holds, in minor units.", examples=[500])
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
