"""Rules of the risk limits: how much a user may send per transfer and per day, and when card
money may be sent on.

The limits are configured here (settings) and handed to the transfer's SQL function
(`transactions.transfer`, migration 0011), which weighs them twice: first without locks, before
the recipient is looked at (so a refusal tells nothing about the email), then exactly, under the
sender's wallet lock, inside the posting. Every transfer out of a wallet takes that lock, so two
transfers of one sender are weighed one after the other, each seeing what the other sent: the
daily total cannot overshoot, whatever the concurrency. The per-transaction limit needs no
database and is weighed here first.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from micropay_common.money import utc_day_bounds
from transactions_microservice.limits import repository
from transactions_microservice.limits.exceptions import LimitExceeded
from transactions_microservice.limits.schemas import LimitsRead, TransferAllowance
from transactions_microservice.limits.top_ups import TopUpAllowanceClient
from transactions_microservice.models import AccountId
from transactions_microservice.settings import TransactionsSettings


@dataclass(frozen=True)
class Day:
    """The UTC day a transfer counts in."""

    start: datetime
    resets_at: datetime

    @classmethod
    def of(cls, now: datetime | None = None) -> Day:
        """The day `now` (default: the present) falls in."""
        start, end = utc_day_bounds(now or datetime.now(UTC))
        return cls(start, end)


def check_transfer_amount(settings: TransactionsSettings, amount: int, currency: str) -> None:
    """Refuse a transfer above the per-transaction limit of its currency."""
    limit = settings.transfer_max_amounts.get(currency)
    if limit is not None and amount > limit:
        raise LimitExceeded(
            f"A single transfer in {currency} may be at most {limit} minor units.",
            limit_kind="transfer_per_transaction",
            limit=limit,
            remaining=limit,
            currency=currency,
            resets_at=None,
        )


def daily_limit_exceeded(*, limit: int, remaining: int, currency: str, day: Day) -> LimitExceeded:
    """The refusal of a transfer that would take the day's total above the daily limit."""
    return LimitExceeded(
        f"This transfer would take what you sent today in {currency} above your daily limit.",
        limit_kind="transfer_per_day",
        limit=limit,
        remaining=remaining,
        currency=currency,
        resets_at=day.resets_at,
    )


async def hold_back_card_funds(
    session: AsyncSession,
    *,
    transaction_id: uuid.UUID,
    wallet: AccountId,
    amount: int,
    credited_at: datetime,
    three_d_secure: bool,
    settle_seconds: int,
) -> bool:
    """Keep a card top-up from being sent on for `settle_seconds` unless 3-D Secure
    authenticated it; whether it is held back."""
    if three_d_secure or settle_seconds == 0:
        return False
    await repository.record_settlement(
        session,
        transaction_id=transaction_id,
        account_id=wallet,
        amount=amount,
        settles_at=credited_at + timedelta(seconds=settle_seconds),
    )
    return True


async def sent_today(session: AsyncSession, user_id: str, currency: str, day: Day) -> int:
    """What the user's wallet in `currency` sent since `day` began, today's pending invitations
    included: the sum the day's transfer limit weighs."""
    sent = await repository.sent_today_by_currency(session, user_id, day.start)
    return sent.get(currency, 0)


async def limits(
    session: AsyncSession,
    settings: TransactionsSettings,
    user_id: str,
    top_ups: TopUpAllowanceClient,
) -> LimitsRead:
    """The user's transfer allowances per currency (the limits' and the wallets' currencies)
    and the payment service's top-up allowances (None when it cannot answer now)."""
    # Asked before the first query, so no database connection waits on the payment service.
    top_up_allowances = await top_ups.allowances(user_id)
    day = Day.of()
    sent = await repository.sent_today_by_currency(session, user_id, day.start)
    per_transaction = settings.transfer_max_amounts
    per_day = settings.transfer_daily_limits
    currencies = sorted(set(per_transaction) | set(per_day) | set(sent))
    allowances = []
    for currency in currencies:
        daily = per_day.get(currency)
        sent_today = sent.get(currency, 0)
        allowances.append(
            TransferAllowance(
                currency=currency,
                per_transaction=per_transaction.get(currency),
                per_day=daily,
                sent_today=sent_today,
                remaining_today=None if daily is None else max(daily - sent_today, 0),
                resets_at=day.resets_at,
            )
        )
    return LimitsRead(
        transfers=allowances,
        top_ups=None if top_up_allowances is None else top_up_allowances.top_ups,
        card_funds_settle_seconds=settings.card_funds_settle_seconds,
    )
