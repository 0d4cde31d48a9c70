"""The ledger's rules: every movement of money goes through `post`, the one place that
checks a transaction balances, locks its accounts in a fixed order and keeps balances."""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from micropay_common.pagination import InvalidCursor
from transactions_microservice.holds import repository as holds_repository
from transactions_microservice.ledger import repository
from transactions_microservice.ledger.exceptions import (
    InsufficientFunds,
    LineNotFound,
    UnbalancedTransaction,
)
from transactions_microservice.ledger.repository import (
    EntryRow,
    HistoryFilter,
    LineRecord,
    LockedAccount,
)
from transactions_microservice.models import USER


@dataclass(frozen=True)
class Line:
    """One line of a posting: a signed amount on an account."""

    account_id: int
    amount: int
    currency: str
    type: str
    counterparty_user_id: str | None = None


@dataclass(frozen=True)
class Posted:
    """A transaction as written."""

    id: uuid.UUID
    created_at: datetime
    balances_after: dict[int, int]


@dataclass(frozen=True)
class LedgerCheck:
    """The outcome of the invariant check."""

    ok: bool
    checked_at: datetime
    counts: dict[str, int]
    violations: dict[str, list[dict[str, Any]]]


def check_balanced(lines: Sequence[Line]) -> None:
    """Raise UnbalancedTransaction unless the lines are non-zero and sum to zero per currency."""
    if len(lines) < 2:
        raise UnbalancedTransaction("a transaction needs at least two lines")
    totals: dict[str, int] = defaultdict(int)
    for line in lines:
        if line.amount == 0:
            raise UnbalancedTransaction("a line must move a non-zero amount")
        totals[line.currency] += line.amount
    unbalanced = {currency: total for currency, total in totals.items() if total != 0}
    if unbalanced:
        raise UnbalancedTransaction(f"lines do not sum to zero: {unbalanced}")


async def lock_accounts(
    session: AsyncSession, account_ids: Sequence[int]
) -> dict[int, LockedAccount]:
    """Lock accounts in id order for the rest of the transaction; overdue holds are released.

    Every path that changes an account locks all the accounts it will touch with one call
    to this before anything else, so transactions never wait on each other in a cycle.
    """
    locked = await repository.lock_accounts(session, account_ids)
    found: dict[int, LockedAccount] = {}
    for account in locked:
        if account.held > 0:
            held = await holds_repository.release_expired(session, account.id)
            account = LockedAccount(
                account.id, account.kind, account.currency, account.balance, held
            )
        found[account.id] = account
    missing = set(account_ids) - set(found)
    if missing:
        raise LookupError(f"no accounts {sorted(missing)}")
    return found


async def post(
    session: AsyncSession,
    *,
    type_: str,
    reference: str,
    lines: Sequence[Line],
    description: str | None = None,
    transaction_id: uuid.UUID | None = None,
) -> Posted | None:
    """Write a balanced transaction and move the balances; None if (type, reference) exists.

    A wallet line that would leave less than nothing available raises InsufficientFunds
    before anything is written; the database CHECKs stand behind this for any bug.
    """
    check_balanced(lines)
    locked = await lock_accounts(session, [line.account_id for line in lines])
    running = {account_id: account.balance for account_id, account in locked.items()}
    rows: list[EntryRow] = []
    for line in lines:
        account = locked[line.account_id]
        if account.currency != line.currency:
            raise UnbalancedTransaction(
                f"a {line.currency} line on account {account.id}, which holds {account.currency}"
            )
        running[account.id] += line.amount
        rows.append(
            EntryRow(
                account_id=account.id,
                type=line.type,
                amount=line.amount,
                currency=line.currency,
                balance_after=running[account.id],
                counterparty_user_id=line.counterparty_user_id,
            )
        )
    for account in locked.values():
        debited = running[account.id] < account.balance
        if account.kind == USER and debited and running[account.id] - account.held < 0:
            raise InsufficientFunds(
                "The wallet's available balance does not cover this amount.",
                available=account.balance - account.held,
                currency=account.currency,
            )
    transaction_id = transaction_id or uuid.uuid4()
    created_at = await repository.write_transaction(
        session,
        transaction_id=transaction_id,
        type_=type_,
        reference=reference,
        description=description,
        deltas={
            account_id: balance - locked[account_id].balance
            for account_id, balance in running.items()
            if balance != locked[account_id].balance
        },
        rows=rows,
    )
    if created_at is None:
        return None
    return Posted(id=transaction_id, created_at=created_at, balances_after=running)


async def history(
    session: AsyncSession, where: HistoryFilter, *, limit: int, starting_after: int | None
) -> list[LineRecord]:
    """Up to `limit + 1` of the user's lines after the line `starting_after`, newest first."""
    lines = await repository.history_page(
        session, where, limit=limit + 1, starting_after=starting_after
    )
    # An empty page after a cursor is the end of the history, or a cursor that is not theirs.
    if (
        not lines
        and starting_after is not None
        and not await repository.is_users_line(session, where.user_id, starting_after)
    ):
        raise InvalidCursor(f"starting_after={starting_after} is not one of your lines.")
    return lines


async def line(session: AsyncSession, user_id: str, entry_id: int) -> LineRecord:
    """One of the user's lines, or LineNotFound (also for another user's line)."""
    found = await repository.history_line(session, user_id, entry_id)
    if found is None:
        raise LineNotFound(f"You have no ledger line {entry_id}.")
    return found


async def check(session: AsyncSession) -> LedgerCheck:
    """Check the ledger's invariants on one consistent snapshot.

    Every transaction's entries sum to zero per currency; every account's balance is the sum
    of its entries and each entry's balance_after the running sum; every wallet's `held` is the
    sum of its active holds; no wallet is negative, in balance or in what is available.
    """
    # One snapshot for all the queries, so postings committing meanwhile cannot show as drift.
    await session.connection(
        execution_options={"isolation_level": "REPEATABLE READ", "postgresql_readonly": True}
    )
    violations = await repository.run_checks(session)
    return LedgerCheck(
        ok=not any(violations.values()),
        checked_at=datetime.now(UTC),
        counts=await repository.counts(session),
        violations=violations,
    )
