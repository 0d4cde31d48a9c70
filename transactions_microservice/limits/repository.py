"""SQL of the limits: what a wallet sent today, its card money not yet settled."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import bindparam, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from transactions_microservice.models import AccountId, top_up_settlements

# A pending invitation made today counts as sent: its money leaves the wallet when the email
# signs up, and transfers weigh it so (transactions.transfer, revision 0018).
_SENT_TODAY_BY_CURRENCY = text(
    """
    SELECT a.currency,
           coalesce((SELECT -sum(e.amount) FROM transactions.entries AS e
                      WHERE e.account_id = a.id AND e.type = 'transfer_out'
                        AND e.created_at >= :day_start), 0)
         + coalesce((SELECT sum(i.amount) FROM transactions.transfer_invitations AS i
                      WHERE i.sender_id = a.user_id AND i.currency = a.currency
                        AND i.status = 'pending' AND i.created_at >= :day_start), 0)
           AS sent_today
    FROM transactions.accounts AS a
    WHERE a.user_id = :user_id
    """
).bindparams(bindparam("user_id"), bindparam("day_start"))


async def sent_today_by_currency(
    session: AsyncSession, user_id: str, day_start: datetime
) -> dict[str, int]:
    """What each of the user's wallets sent since `day_start` (pending invitations included),
    by currency."""
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
