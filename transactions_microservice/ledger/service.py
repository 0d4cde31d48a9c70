"""The ledger's rules: every movement of money goes through `post`, the one place that
checks a transaction balances, locks its accounts in a fixed order and keeps balances."""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from micropay_common.db import Database
from micropay_common.pagination import InvalidCursor
from transactions_microservice.ledger import repository
from transactions_microservice.ledger.exceptions import (
    EntryNotFound,
    InsufficientFunds,
    UnbalancedTransaction,
)
from transactions_microservice.ledger.repository import (
    EntryRecord,
    EntryRow,
    HistoryFilter,
)
from transactions_microservice.ledger.repository import (
    LockedAccount as LockedAccount,  # re-exported: the accounts as locked
)
from transactions_microservice.ledger.repository import (
    ReleasedHold as ReleasedHold,  # re-exported: what a hold's release gives back
)
from transactions_microservice.models import (
    AccountId,
    AccountKind,
    EntryType,
    LedgerTransactionType,
)


@dataclass(frozen=True, kw_only=True)
class NewEntry:
    """An entry to post: a signed amount on an account."""

    account_id: AccountId
    amount: int
    currency: str
    type: EntryType
    counterparty_user_id: str | None = None


@dataclass(frozen=True, kw_only=True)
class Posted:
    """A transaction as written."""

    id: uuid.UUID
    created_at: datetime
    balances_after: dict[AccountId, int]
    debt_settled: dict[AccountId, int] = field(default_factory=dict)
    """Per wallet credited, how much of the credit paid its user's debt (`debt_settlement`)."""


@dataclass(frozen=True)
class LedgerCheck:
    """The outcome of the invariant check."""

    ok: bool
    checked_at: datetime
    counts: dict[str, int]
    violations: dict[str, list[dict[str, Any]]]


def check_balanced(entries: Sequence[NewEntry]) -> None:
    """Raise UnbalancedTransaction unless the entries are non-zero and sum to zero per currency."""
    if len(entries) < 2:
        raise UnbalancedTransaction("a transaction needs at least two entries")
    totals: dict[str, int] = defaultdict(int)
    for entry in entries:
        if entry.amount == 0:
            raise UnbalancedTransaction("an entry must move a non-zero amount")
        totals[entry.currency] += entry.amount
    unbalanced = {currency: total for currency, total in totals.items() if total != 0}
    if unbalanced:
        raise UnbalancedTransaction(f"entries do not sum to zero: {unbalanced}")


async def lock_accounts(
    session: AsyncSession, account_ids: Collection[AccountId]
) -> dict[AccountId, LockedAccount]:
    """Lock the accounts in id order until the transaction ends; LookupError if one is missing.

    Every path that changes an account locks all the accounts it will touch with one call
    to this before anything else, so transactions never wait on each other in a cycle.
    """
    locked = {
        account.id: account for account in await repository.lock_accounts(session, account_ids)
    }
    missing = set(account_ids) - set(locked)
    if missing:
        raise LookupError(f"no accounts {sorted(missing)}")
    return locked


async def release_overdue_holds(
    session: AsyncSession, locked: Mapping[AccountId, LockedAccount]
) -> dict[AccountId, LockedAccount]:
    """Expire the overdue holds of accounts the caller has locked; the accounts as they are now.

    A hold past its expiry stops counting in balances at once, but its amount stays in `held`
    (and under the CHECK on `balance - held`) until this runs: before a posting or a new hold
    weighs what a wallet has available, and by the sweep for wallets nobody touches. What an
    expired hold gives back to a wallet whose user owes pays the debt at once
    (`settle_debt_from_holds`); the debt account is then among the accounts returned. The rule
    is the SQL function `transactions.release_overdue_holds` (migration 0011), which the hot
    paths run in their own statement.
    """
    released = dict(locked)
    for account in locked.values():
        if account.held > 0:
            for current in await repository.release_overdue_holds(session, account.id):
                released[current.id] = current
    return released


async def settle_debt_from_holds(
    session: AsyncSession, wallet_id: AccountId, holds: Sequence[ReleasedHold]
) -> None:
    """Pay the user's debt with what the (locked) wallet's released holds gave back.

    Money a voided or expired hold stops reserving would otherwise sit spendable beside a debt
    (and could leave by a refund while the platform stays owed). One `debt_settlement`
    transaction per hold, referenced by the hold's reference, moves up to what is still owed
    from the wallet to the debt account, in the caller's transaction; it balances, so the
    deferred balance constraint holds. The rule is the SQL function
    `transactions.settle_debt_from_holds` (migration 0011), shared with the hot paths.
    """
    await repository.settle_debt_from_holds(session, wallet_id, holds)


async def post(
    session: AsyncSession,
    *,
    type_: LedgerTransactionType,
    reference: str,
    entries: Sequence[NewEntry],
    description: str | None = None,
    transaction_id: uuid.UUID | None = None,
) -> Posted | None:
    """Write a balanced transaction and move the balances; None if (type, reference) exists.

    A credit to a wallet whose user owes money in its currency (their debt account) pays the
    debt first: `debt_settlement` entries, in the same transaction, move up to the amount
    credited from the wallet to the debt account (they balance, so the deferred balance
    constraint holds). An entry that would leave a wallet less than nothing available raises
    InsufficientFunds before anything is written; the database CHECKs stand behind this for
    any bug. (A transfer posts in one statement instead, `transactions.transfer`, with the
    same rules and its own limits weighed under the same locks: migration 0011.)
    """
    check_balanced(entries)
    locked = await lock_accounts(session, [entry.account_id for entry in entries])
    # Looked up once the wallets are locked: a user's first dispute opens their debt account in
    # the withdrawal's own transaction, so a lookup before the lock could miss one that
    # committed while this posting waited, and the credit would skip the debt.
    debts = await repository.debt_accounts(session, _credited(entries))
    unlocked = [debt for debt in debts.values() if debt not in locked]
    if unlocked:
        # Whoever locks a debt account holds its wallet's lock (taken first: the wallet's id is
        # the lower), and this posting holds that wallet: no wait in a cycle.
        locked.update(await lock_accounts(session, unlocked))
    locked = await release_overdue_holds(session, locked)
    running = {account_id: account.balance for account_id, account in locked.items()}
    rows: list[EntryRow] = []
    settled_debts: dict[AccountId, int] = {}
    for entry in entries:
        account = locked[entry.account_id]
        if account.currency != entry.currency:
            raise UnbalancedTransaction(
                f"a {entry.currency} entry on account {account.id}, which holds {account.currency}"
            )
        running[account.id] += entry.amount
        rows.append(_row(entry.account_id, entry, running))
    # Money credited to a wallet whose user owes pays the debt first, in this transaction,
    # whatever path credited it: no credit can be spent past a debt.
    for wallet_id, debt_id in debts.items():
        settled = min(running[wallet_id] - locked[wallet_id].balance, -running[debt_id])
        if settled > 0:
            settled_debts[wallet_id] = settled
            currency = locked[wallet_id].currency
            for account_id, amount in ((wallet_id, -settled), (debt_id, settled)):
                running[account_id] += amount
                settlement = NewEntry(
                    account_id=account_id,
                    amount=amount,
                    currency=currency,
                    type=EntryType.DEBT_SETTLEMENT,
                )
                rows.append(_row(account_id, settlement, running))
    for account in locked.values():
        debited = running[account.id] < account.balance
        if account.kind == AccountKind.USER and debited and running[account.id] - account.held < 0:
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
    return Posted(
        id=transaction_id,
        created_at=created_at,
        balances_after=running,
        debt_settled=settled_debts,
    )


def _credited(entries: Sequence[NewEntry]) -> list[AccountId]:
    """The accounts the entries credit on balance (the only ones a debt settlement concerns)."""
    net: dict[AccountId, int] = defaultdict(int)
    for entry in entries:
        net[entry.account_id] += entry.amount
    return [account_id for account_id, amount in net.items() if amount > 0]


def _row(account_id: AccountId, entry: NewEntry, running: Mapping[AccountId, int]) -> EntryRow:
    return EntryRow(
        account_id=account_id,
        type=entry.type,
        amount=entry.amount,
        currency=entry.currency,
        balance_after=running[account_id],
        counterparty_user_id=entry.counterparty_user_id,
    )


async def transaction_by_reference(
    session: AsyncSession, type_: LedgerTransactionType, reference: str
) -> uuid.UUID | None:
    """Id of the transaction posted for (type, reference), if any."""
    return await repository.transaction_by_reference(session, type_, reference)


async def reverse(
    session: AsyncSession,
    transaction_id: uuid.UUID,
    *,
    type_: LedgerTransactionType,
    reference: str,
    entry_type: EntryType,
) -> Posted | None:
    """Post the mirror image of a transaction (every entry negated) once per (type, reference)."""
    posted = await repository.transaction_entries(session, transaction_id)
    return await post(
        session,
        type_=type_,
        reference=reference,
        entries=[
            NewEntry(
                account_id=row.account_id,
                amount=-row.amount,
                currency=row.currency,
                type=entry_type,
                counterparty_user_id=row.counterparty_user_id,
            )
            for row in posted
        ],
    )


async def history(
    db: Database,
    user_id: str,
    *,
    limit: int,
    starting_after: int | None,
    entry_type: EntryType | None = None,
    currency: str | None = None,
    created_gte: datetime | None = None,
    created_lt: datetime | None = None,
) -> list[EntryRecord]:
    """Up to `limit + 1` of the user's entries after the entry `starting_after`, newest first,
    of one type, wallet or time range when asked."""
    where = HistoryFilter(
        user_id=user_id,
        type=entry_type,
        currency=currency,
        created_gte=created_gte,
        created_lt=created_lt,
    )
    found = await repository.history_page(db, where, limit=limit + 1, starting_after=starting_after)
    # An empty page after a cursor is the end of the history, or a cursor that is not theirs.
    if (
        not found
        and starting_after is not None
        and not await repository.is_users_entry(db, where.user_id, starting_after)
    ):
        raise InvalidCursor(f"starting_after={starting_after} is not one of your entries.")
    return found


async def entry(db: Database, user_id: str, entry_id: int) -> EntryRecord:
    """One of the user's entries, or EntryNotFound (also for another user's entry)."""
    found = await repository.history_entry(db, user_id, entry_id)
    if found is None:
        raise EntryNotFound(f"You have no ledger entry {entry_id}.")
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
