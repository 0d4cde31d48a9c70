"""SQL for statements: a wallet's balance before an instant and its entries over a period."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import DateTime, bindparam, select, text
from sqlalchemy.ext.asyncio import AsyncConnection

from transactions_microservice.models import (
    AccountId,
    accounts,
    entries,
    ledger_transactions,
    users,
)

BATCH = 500
"""Entries fetched per round trip of the server-side cursor: a statement never holds more."""


@dataclass(frozen=True, kw_only=True)
class StatementEntry:
    """An entry as a statement lists it."""

    id: int
    transaction_id: uuid.UUID
    type: str
    amount: int
    balance_after: int
    reference: str
    description: str | None
    counterparty_email: str | None
    created_at: datetime


_START = bindparam("start", type_=DateTime(timezone=True))
_END = bindparam("end", type_=DateTime(timezone=True))

_WALLET = select(accounts.c.id).where(
    accounts.c.user_id == bindparam("user_id"), accounts.c.currency == bindparam("currency")
)
# The last entry before `start` by a backward probe of entries_account_history_idx: the opening
# balance costs one index lookup, however long the history before the period.
BALANCE_BEFORE = (
    select(entries.c.balance_after)
    .where(entries.c.account_id == bindparam("account_id"), entries.c.created_at < _START)
    .order_by(entries.c.created_at.desc(), entries.c.id.desc())
    .limit(1)
)
LINES = (
    select(
        entries.c.id,
        entries.c.transaction_id,
        entries.c.type,
        entries.c.amount,
        entries.c.balance_after,
        ledger_transactions.c.reference,
        ledger_transactions.c.description,
        users.c.email.label("counterparty_email"),
        entries.c.created_at,
    )
    .join(ledger_transactions, ledger_transactions.c.id == entries.c.transaction_id)
    .outerjoin(users, users.c.user_id == entries.c.counterparty_user_id)
    .where(
        entries.c.account_id == bindparam("account_id"),
        entries.c.created_at >= _START,
        entries.c.created_at < _END,
    )
    # Posting order: a wallet's entries are written under its lock and stamped inside it.
    .order_by(entries.c.created_at, entries.c.id)
)


async def limit_idle(connection: AsyncConnection, seconds: int) -> None:
    """End the (current) transaction if it stays idle longer than `seconds`."""
    await connection.execute(
        text(f"SET LOCAL idle_in_transaction_session_timeout = '{int(seconds)}s'")
    )


async def wallet(connection: AsyncConnection, user_id: str, currency: str) -> AccountId | None:
    """Id of the user's wallet in `currency`, if they have one."""
    found = await connection.scalar(_WALLET, {"user_id": user_id, "currency": currency})
    return None if found is None else AccountId(found)


async def balance_before(
    connection: AsyncConnection, account_id: AccountId, start: datetime
) -> int:
    """The wallet's balance after its last entry before `start` (0 before its first)."""
    found = await connection.scalar(BALANCE_BEFORE, {"account_id": account_id, "start": start})
    return int(found or 0)


async def entries_between(
    connection: AsyncConnection, account_id: AccountId, start: datetime, end: datetime
) -> AsyncIterator[list[StatementEntry]]:
    """The wallet's entries from `start` (included) to `end` (excluded) in posting order, in
    batches read from a server-side cursor (the connection must be in a transaction)."""
    result = await connection.stream(
        LINES.execution_options(yield_per=BATCH),
        {"account_id": account_id, "start": start, "end": end},
    )
    async for rows in result.partitions(BATCH):
        yield [StatementEntry(**row._mapping) for row in rows]
