"""SQL for accounts and users."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Column, DateTime, Select, bindparam, case, delete, func, or_, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from micropay_common.db import Direct, Statement
from transactions_microservice.models import (
    AccountId,
    AccountKind,
    HoldStatus,
    SystemAccount,
    accounts,
    entries,
    holds,
    ledger_transactions,
    top_up_settlements,
    users,
)


@dataclass(frozen=True)
class WalletBalance:
    """A wallet's posted and held amounts, its card money still settling, and what its user
    owes in its currency."""

    currency: str
    balance: int
    held: int
    unsettled: int = 0
    owed: int = 0


async def wallet_ids(
    session: AsyncSession, user_ids: list[str], currency: str
) -> dict[str, AccountId]:
    """Wallet ids by user id for the users that have a wallet in `currency`."""
    rows = await session.execute(
        select(accounts.c.user_id, accounts.c.id).where(
            accounts.c.user_id.in_(user_ids), accounts.c.currency == currency
        )
    )
    return {row.user_id: row.id for row in rows}


async def open_wallet(session: AsyncSession, user_id: str, currency: str) -> AccountId:
    """Id of the user's wallet in `currency`, opening it when missing."""
    return await _get_or_create(
        session,
        select(accounts.c.id).where(accounts.c.user_id == user_id, accounts.c.currency == currency),
        {"kind": AccountKind.USER, "user_id": user_id, "currency": currency},
        [accounts.c.user_id, accounts.c.currency],
    )


async def system_account(session: AsyncSession, code: SystemAccount, currency: str) -> AccountId:
    """Id of a system account in `currency`, opening it on first use."""
    return await _get_or_create(
        session,
        select(accounts.c.id).where(
            accounts.c.system_code == code, accounts.c.currency == currency
        ),
        {"kind": AccountKind.SYSTEM, "system_code": code, "currency": currency},
        [accounts.c.system_code, accounts.c.currency],
    )


async def debt_account(session: AsyncSession, user_id: str, currency: str) -> AccountId:
    """Id of the user's debt account in `currency`, opening it on first use."""
    return await _get_or_create(
        session,
        select(accounts.c.id).where(
            accounts.c.debtor_id == user_id, accounts.c.currency == currency
        ),
        {"kind": AccountKind.DEBT, "debtor_id": user_id, "currency": currency},
        [accounts.c.debtor_id, accounts.c.currency],
    )


async def owed(session: AsyncSession, user_id: str, currency: str) -> int:
    """What the user owes in `currency` (minus their debt account's balance; 0 without one)."""
    balance = await session.scalar(
        select(accounts.c.balance).where(
            accounts.c.debtor_id == user_id, accounts.c.currency == currency
        )
    )
    return -int(balance or 0)


async def _get_or_create(
    session: AsyncSession,
    lookup: Select[Any],
    values: dict[str, str],
    conflict_columns: list[Column[Any]],
) -> AccountId:
    found = await session.scalar(lookup)
    if found is not None:
        return AccountId(found)
    created = await session.scalar(
        insert(accounts)
        .values(**values)
        .on_conflict_do_nothing(index_elements=conflict_columns)
        .returning(accounts.c.id)
    )
    if created is not None:
        return AccountId(created)
    # A concurrent transaction opened it between our lookup and insert (and has committed,
    # since the insert waited for it): this statement's fresh snapshot sees it.
    return AccountId(await session.scalar(lookup))


# Held amounts without the holds past their expiry (released at the wallet's next posting or
# by the sweep), looked up only for wallets that hold money. Built once: it is on every read.
_OVERDUE = (
    select(func.coalesce(func.sum(holds.c.amount), 0))
    .where(
        holds.c.account_id == accounts.c.id,
        holds.c.status == HoldStatus.ACTIVE,
        holds.c.expires_at <= func.now(),
    )
    .scalar_subquery()
)
_UNSETTLED = (
    select(func.coalesce(func.sum(top_up_settlements.c.amount), 0))
    .where(
        top_up_settlements.c.account_id == accounts.c.id,
        top_up_settlements.c.settles_at > func.now(),
    )
    .scalar_subquery()
)
_DEBTS = accounts.alias("debts")
_OWED = (
    select(-_DEBTS.c.balance)
    .where(_DEBTS.c.debtor_id == accounts.c.user_id, _DEBTS.c.currency == accounts.c.currency)
    .scalar_subquery()
)
_BALANCES = (
    select(
        accounts.c.currency,
        accounts.c.balance,
        case((accounts.c.held == 0, 0), else_=accounts.c.held - _OVERDUE).label("held"),
        _UNSETTLED.label("unsettled"),
        func.coalesce(_OWED, 0).label("owed"),
    )
    .where(accounts.c.user_id == bindparam("user_id"))
    .order_by(accounts.c.currency)
)


_BALANCES_SQL = Statement.of(_BALANCES)


async def balances(db: Direct, user_id: str) -> list[WalletBalance]:
    """The user's wallets, by currency, from the stored balances (never the entries)."""
    rows = await db.fetch(_BALANCES_SQL, user_id=user_id)
    return [
        WalletBalance(
            row["currency"],
            row["balance"],
            int(row["held"]),
            int(row["unsettled"]),
            int(row["owed"]),
        )
        for row in rows
    ]


_AT = bindparam("at", type_=DateTime(timezone=True))


def _balance_before(account: Any) -> Any:
    """The balance the account's last entry before `at` left (a probe of
    entries_account_history_idx, whatever the depth of the history), or NULL."""
    return (
        select(entries.c.balance_after)
        .where(entries.c.account_id == account, entries.c.created_at < _AT)
        .order_by(entries.c.created_at.desc(), entries.c.id.desc())
        .limit(1)
        .scalar_subquery()
    )


_HELD_AT = (
    select(func.coalesce(func.sum(holds.c.amount), 0))
    .where(
        holds.c.account_id == accounts.c.id,
        holds.c.created_at < _AT,
        # Still reserving at `at`: not yet captured, voided or expired, and not yet overdue.
        or_(holds.c.resolved_at.is_(None), holds.c.resolved_at >= _AT),
        holds.c.expires_at > _AT,
    )
    .scalar_subquery()
)
_UNSETTLED_AT = (
    select(func.coalesce(func.sum(top_up_settlements.c.amount), 0))
    .join(ledger_transactions, ledger_transactions.c.id == top_up_settlements.c.transaction_id)
    .where(
        top_up_settlements.c.account_id == accounts.c.id,
        top_up_settlements.c.settles_at > _AT,
        ledger_transactions.c.created_at < _AT,
    )
    .scalar_subquery()
)
BALANCES_AT = (
    select(
        accounts.c.currency,
        func.coalesce(_balance_before(accounts.c.id), 0).label("balance"),
        _HELD_AT.label("held"),
        _UNSETTLED_AT.label("unsettled"),
        func.coalesce(-_balance_before(_DEBTS.c.id), 0).label("owed"),
    )
    .select_from(
        accounts.outerjoin(
            _DEBTS,
            (_DEBTS.c.debtor_id == accounts.c.user_id) & (_DEBTS.c.currency == accounts.c.currency),
        )
    )
    .where(accounts.c.user_id == bindparam("user_id"))
    .order_by(accounts.c.currency)
)
_BALANCES_AT_SQL = Statement.of(BALANCES_AT)


async def balances_at(db: Direct, user_id: str, at: datetime) -> list[WalletBalance]:
    """The user's wallets (those they have now), by currency, as the entries and holds posted
    before `at` left them; one statement whose cost does not grow with the history's depth."""
    rows = await db.fetch(_BALANCES_AT_SQL, user_id=user_id, at=at)
    return [
        WalletBalance(
            row["currency"],
            int(row["balance"]),
            int(row["held"]),
            int(row["unsettled"]),
            int(row["owed"]),
        )
        for row in rows
    ]


async def release_email(session: AsyncSession, email: str, keep_user_id: str) -> int:
    """Remove `email` from any user but `keep_user_id`; returns how many rows it removed."""
    result = await session.execute(
        delete(users).where(users.c.email == email, users.c.user_id != keep_user_id)
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


async def upsert_user(session: AsyncSession, user_id: str, email: str) -> None:
    """Record the user's email (a newer registration event replaces an older one)."""
    statement = insert(users).values(user_id=user_id, email=email)
    await session.execute(
        statement.on_conflict_do_update(
            index_elements=[users.c.user_id], set_={"email": statement.excluded.email}
        )
    )
