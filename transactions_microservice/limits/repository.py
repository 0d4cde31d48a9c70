"""SQL of the limits: what a wallet sent today, its card money not yet settled."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import bindparam, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from transactions_microservice.models import AccountId, top_up_settlements


@dataclass(frozen=True)
class WalletUsage:
    """What a wallet sent since the day began, and its card money still settling."""

    sent_today: int
    unsettled: int


# Both sums in one round trip. The transfers read `entries_account_type_history_idx` from the
# day's start; the settlements their (account_id, settles_at) index.
_WALLET_USAGE = text(
    """
    SELECT
        (SELECT coalesce(-sum(e.amount), 0) FROM transactions.entries AS e
          WHERE e.account_id = :account_id AND e.type = 'transfer_out'
            AND e.created_at >= :day_start) AS sent_today,
        (SELECT coalesce(sum(s.amount), 0) FROM transactions.top_up_settlements AS s
          WHERE s.account_id = :account_id AND s.settles_at > now()) AS unsettled
    """
).bindparams(bindparam("account_id"), bindparam("day_start"))

_SENT_TODAY_BY_CURRENCY = text(
    """
    SELECT a.currency, coalesce(-sum(e.amount), 0) AS sent_today
    FROM transactions.accounts AS a
    LEFT JOIN transactions.entries AS e
           ON e.account_id = a.id AND e.type = 'transfer_out' AND e.created_at >= :day_start
    WHERE a.user_id = :user_id
    GROUP BY a.currency
    """
).bindparams(bindparam("user_id"), bindparam("day_start"))


async def wallet_usage(
    session: AsyncSession, account_id: AccountId, day_start: datetime
) -> WalletUsage:
    """What the wallet sent since `day_start` and its card money not settled yet."""
    row = (
        await session.execute(_WALLET_USAGE, {"account_id": account_id, "day_start": day_start})
    ).one()
    return WalletUsage(int(row.sent_today), int(row.unsettled))


async def sent_today_by_currency(
    session: AsyncSession, user_id: str, day_start: datetime
) -> dict[str, int]:
    """What each of the user's wallets sent since `day_start`, by currency."""
    rows = await session.execute(
        _SENT_TODAY_BY_CURRENCY, {"user_id": user_id, "day_start": day_start}
    )
    return {row.currency: int(row.sent_today) for row in rows}


async def record_settlement(
    session: AsyncSession,
    *,
    transaction_id: uuid.UUID,
    account_id: AccountId,
    amount: int,
    settles_at: datetime,
) -> None:
    """Record card money that the wallet may not send on before `settles_at` (once per top-up)."""
    await session.execute(
        insert(top_up_settlements)
        .values(
            transaction_id=transaction_id,
            account_id=account_id,
            amount=amount,
            settles_at=settles_at,
        )
        .on_conflict_do_nothing(index_elements=[top_up_settlements.c.transaction_id])
    )
