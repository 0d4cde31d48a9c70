"""SQL for the ledger: locking accounts, writing transactions and entries, reading history."""

from __future__ import annotations

import functools
import uuid
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    ARRAY,
    BigInteger,
    Integer,
    Select,
    Text,
    any_,
    bindparam,
    select,
    text,
    true,
    tuple_,
)
from sqlalchemy.dialects.postgresql import UUID
from sqlalchemy.ext.asyncio import AsyncSession

from micropay_common.db import Database
from transactions_microservice.models import (
    AccountId,
    EntryType,
    LedgerTransactionType,
    accounts,
    entries,
    ledger_transactions,
    users,
)


@dataclass(frozen=True, kw_only=True)
class LockedAccount:
    """An account row as read under its lock."""

    id: AccountId
    kind: str
    currency: str
    balance: int
    held: int


@dataclass(frozen=True, kw_only=True)
class EntryRecord:
    """An entry as its owner's history shows it: with its transaction's reference and
    description, and the counterparty's email."""

    id: int
    transaction_id: uuid.UUID
    type: str
    amount: int
    currency: str
    balance_after: int
    reference: str
    description: str | None
    counterparty_email: str | None
    created_at: datetime


@dataclass(frozen=True)
class HistoryFilter:
    """What a history page is restricted to."""

    user_id: str
    type: EntryType | None = None
    currency: str | None = None
    created_gte: datetime | None = None
    created_lt: datetime | None = None


_LOCK_ACCOUNTS = (
    select(accounts.c.id, accounts.c.kind, accounts.c.currency, accounts.c.balance, accounts.c.held)
    .where(accounts.c.id == any_(bindparam("ids", type_=ARRAY(BigInteger))))
    .order_by(accounts.c.id)
    .with_for_update()
)

# The whole write of a posting in one statement (one round trip): the transaction row, the
# balances and the entries. If (type, reference) exists, `t` is empty and nothing else is
# written. Arrays rather than VALUES lists keep it one prepared statement for any entry count.
_WRITE_TRANSACTION = text(
    """
    WITH t AS (
        INSERT INTO transactions.ledger_transactions
            (id, type, reference, description, created_at)
        VALUES (:id, :type, :reference, :description, clock_timestamp())
        ON CONFLICT (type, reference) DO NOTHING
        RETURNING id, created_at
    ), moved AS (
        UPDATE transactions.accounts AS a SET balance = a.balance + d.delta
        FROM t, unnest(:delta_accounts, :deltas) AS d(account_id, delta)
        WHERE a.id = d.account_id
    ), written AS (
        INSERT INTO transactions.entries (transaction_id, account_id, type, amount, currency,
                                          balance_after, counterparty_user_id, created_at)
        SELECT t.id, e.account_id, e.type, e.amount, e.currency, e.balance_after,
               e.counterparty_user_id, t.created_at
        FROM t, unnest(:accounts, :types, :amounts, :currencies, :balances_after,
                       :counterparties)
             AS e(account_id, type, amount, currency, balance_after, counterparty_user_id)
    )
    SELECT created_at FROM t
    """
).bindparams(
    bindparam("id", type_=UUID(as_uuid=True)),
    bindparam("type", type_=Text),
    bindparam("reference", type_=Text),
    bindparam("description", type_=Text),
    bindparam("delta_accounts", type_=ARRAY(BigInteger)),
    bindparam("deltas", type_=ARRAY(BigInteger)),
    bindparam("accounts", type_=ARRAY(BigInteger)),
    bindparam("types", type_=ARRAY(Text)),
    bindparam("amounts", type_=ARRAY(BigInteger)),
    bindparam("currencies", type_=ARRAY(Text)),
    bindparam("balances_after", type_=ARRAY(BigInteger)),
    bindparam("counterparties", type_=ARRAY(Text)),
)


@dataclass(frozen=True, kw_only=True)
class EntryRow:
    """An entry as it is written: a new entry with the balance it leaves on its account."""

    account_id: AccountId
    type: EntryType
    amount: int
    currency: str
    balance_after: int
    counterparty_user_id: str | None


async def lock_accounts(
    session: AsyncSession, account_ids: Collection[AccountId]
) -> list[LockedAccount]:
    """Lock the accounts in id order (so two postings never wait on each other in a cycle)."""
    rows = await session.execute(_LOCK_ACCOUNTS, {"ids": sorted(set(account_ids))})
    return [
        LockedAccount(id=r.id, kind=r.kind, currency=r.currency, balance=r.balance, held=r.held)
        for r in rows
    ]


_DEBT_ACCOUNTS = text(
    "SELECT w.id AS wallet, d.id AS debt FROM transactions.accounts w "
    "JOIN transactions.accounts d ON d.debtor_id = w.user_id AND d.currency = w.currency "
    "WHERE w.id = ANY(:ids) AND w.kind = 'user'"
).bindparams(bindparam("ids", type_=ARRAY(BigInteger)))


async def debt_accounts(
    session: AsyncSession, account_ids: Collection[AccountId]
) -> dict[AccountId, AccountId]:
    """The debt account of each of these accounts that is a wallet whose user has one."""
    if not account_ids:
        return {}
    rows = await session.execute(_DEBT_ACCOUNTS, {"ids": sorted(set(account_ids))})
    return {AccountId(row.wallet): AccountId(row.debt) for row in rows}


@dataclass(frozen=True)
class ReleasedHold:
    """A hold whose money its wallet got back (voided or expired): its reference and amount."""

    reference: str
    amount: int


_RELEASE_OVERDUE_HOLDS = text(
    "SELECT id, kind, currency, balance, held FROM transactions.release_overdue_holds(:account_id)"
).bindparams(bindparam("account_id", type_=BigInteger))

_SETTLE_DEBT_FROM_HOLDS = text(
    "SELECT transactions.settle_debt_from_holds(:wallet_id, :references, :amounts)"
).bindparams(
    bindparam("wallet_id", type_=BigInteger),
    bindparam("references", type_=ARRAY(Text)),
    bindparam("amounts", type_=ARRAY(BigInteger)),
)


async def release_overdue_holds(
    session: AsyncSession, account_id: AccountId
) -> list[LockedAccount]:
    """Expire the (locked) account's overdue holds, paying its user's debt with them; the
    account as it is now, and the debt account when one was paid from (locked now)."""
    rows = await session.execute(_RELEASE_OVERDUE_HOLDS, {"account_id": account_id})
    return [
        LockedAccount(id=r.id, kind=r.kind, currency=r.currency, balance=r.balance, held=r.held)
        for r in rows
    ]


async def settle_debt_from_holds(
    session: AsyncSession, wallet_id: AccountId, holds: Sequence[ReleasedHold]
) -> None:
    """Pay the user's debt with what the (locked) wallet's released holds gave back."""
    await session.execute(
        _SETTLE_DEBT_FROM_HOLDS,
        {
            "wallet_id": wallet_id,
            "references": [hold.reference for hold in holds],
            "amounts": [hold.amount for hold in holds],
        },
    )


async def write_transaction(
    session: AsyncSession,
    *,
    transaction_id: uuid.UUID,
    type_: LedgerTransactionType,
    reference: str,
    description: str | None,
    deltas: dict[AccountId, int],
    rows: Sequence[EntryRow],
) -> datetime | None:
    """Write a transaction, move the (locked) balances and write the entries, stamped with the
    time of posting; None, and nothing written, when (type, reference) was posted before."""
    created_at: datetime | None = await session.scalar(
        _WRITE_TRANSACTION,
        {
            "id": transaction_id,
            "type": type_,
            "reference": reference,
            "description": description,
            "delta_accounts": list(deltas),
            "deltas": list(deltas.values()),
            "accounts": [row.account_id for row in rows],
            "types": [row.type for row in rows],
            "amounts": [row.amount for row in rows],
            "currencies": [row.currency for row in rows],
            "balances_after": [row.balance_after for row in rows],
            "counterparties": [row.counterparty_user_id for row in rows],
        },
    )
    return created_at


async def transaction_by_reference(
    session: AsyncSession, type_: LedgerTransactionType, reference: str
) -> uuid.UUID | None:
    """Id of the transaction posted for (type, reference), if any."""
    found: uuid.UUID | None = await session.scalar(
        select(ledger_transactions.c.id).where(
            ledger_transactions.c.type == type_, ledger_transactions.c.reference == reference
        )
    )
    return found


async def transaction_entries(session: AsyncSession, transaction_id: uuid.UUID) -> list[EntryRow]:
    """The entries of a posted transaction, in the order they were written."""
    rows = await session.execute(
        select(
            entries.c.account_id,
            entries.c.type,
            entries.c.amount,
            entries.c.currency,
            entries.c.balance_after,
            entries.c.counterparty_user_id,
        )
        .where(entries.c.transaction_id == transaction_id)
        .order_by(entries.c.id)
    )
    return [EntryRow(**row._mapping) for row in rows]


def _records_of(page: Any) -> Select[Any]:
    """EntryRecords of `page` (a subquery of entries): each entry with its transaction's
    reference and description and the counterparty's email."""
    return select(
        page.c.id,
        page.c.transaction_id,
        page.c.type,
        page.c.amount,
        page.c.currency,
        page.c.balance_after,
        ledger_transactions.c.reference,
        ledger_transactions.c.description,
        users.c.email.label("counterparty_email"),
        page.c.created_at,
    )


def _with_details(statement: Select[Any], page: Any) -> Select[Any]:
    return statement.join(
        ledger_transactions, ledger_transactions.c.id == page.c.transaction_id
    ).outerjoin(users, users.c.user_id == page.c.counterparty_user_id)


async def is_users_entry(db: Database, user_id: str, entry_id: int) -> bool:
    """Whether the entry is on one of the user's wallets."""
    found = await db.scalar(
        select(entries.c.id)
        .join(accounts, accounts.c.id == entries.c.account_id)
        .where(entries.c.id == entry_id, accounts.c.user_id == user_id)
    )
    return found is not None


@functools.cache
def _history_query(
    *, cursor: bool, type_: bool, currency: bool, created_gte: bool, created_lt: bool
) -> Select[Any]:
    """The page query for one combination of filters, built once with bound parameters.

    Built per request, a statement this size costs more Python than its execution costs
    PostgreSQL (building it and its cache key); one object per shape is reused instead.
    """
    wallets = select(accounts.c.id).where(accounts.c.user_id == bindparam("user_id"))
    if currency:
        wallets = wallets.where(accounts.c.currency == bindparam("currency"))
    wallet = wallets.subquery("w")
    conditions = [entries.c.account_id == wallet.c.id]
    cursors: list[tuple[Any, Any]] = []
    if cursor:
        # The cursor entry by primary key alone, planned apart (MATERIALIZED): joined with the
        # ownership check the planner may prefer reading a history index in account order,
        # which costs a scan of the wallet's entries rather than one probe.
        cursor_entry = (
            select(entries.c.created_at, entries.c.id, entries.c.account_id)
            .where(entries.c.id == bindparam("starting_after"))
            .cte("c")
            .prefix_with("MATERIALIZED")
        )
        owned = (
            select(accounts.c.id)
            .where(
                accounts.c.id == cursor_entry.c.account_id,
                accounts.c.user_id == bindparam("user_id"),
            )
            .exists()
        )
        cursors.append((cursor_entry, owned))
        conditions.append(
            tuple_(entries.c.created_at, entries.c.id)
            < tuple_(cursor_entry.c.created_at, cursor_entry.c.id)
        )
    if type_:
        conditions.append(entries.c.type == bindparam("type"))
    if created_gte:
        conditions.append(entries.c.created_at >= bindparam("created_gte"))
    if created_lt:
        conditions.append(entries.c.created_at < bindparam("created_lt"))
    page = (
        select(entries)
        .where(*conditions)
        .order_by(entries.c.created_at.desc(), entries.c.id.desc())
        .limit(bindparam("limit", type_=Integer))
        .lateral("e")
    )
    statement = _records_of(page).select_from(wallet)
    for cursor_entry, owned in cursors:
        statement = statement.join(cursor_entry, true()).where(owned)
    statement = _with_details(statement.join(page, true()), page)
    return statement.order_by(page.c.created_at.desc(), page.c.id.desc()).limit(
        bindparam("limit", type_=Integer)
    )


def history_statement(
    where: HistoryFilter, *, limit: int, starting_after: int | None
) -> tuple[Select[Any], dict[str, Any]]:
    """The query of a history page and its parameters: up to `limit` entries, newest first,
    after the cursor entry.

    Each wallet is read by its own keyset scan of entries_account_history_idx (a LATERAL
    subquery), so the cost is limit rows per wallet whatever the depth of the cursor. The
    cursor entry is looked up in the same statement; one that is not the user's yields nothing.
    """
    values: dict[str, Any] = {
        "user_id": where.user_id,
        "limit": limit,
        "starting_after": starting_after,
        "type": where.type,
        "currency": where.currency,
        "created_gte": where.created_gte,
        "created_lt": where.created_lt,
    }
    statement = _history_query(
        cursor=starting_after is not None,
        type_=where.type is not None,
        currency=where.currency is not None,
        created_gte=where.created_gte is not None,
        created_lt=where.created_lt is not None,
    )
    used = {name: value for name, value in values.items() if value is not None}
    return statement, used


async def history_page(
    db: Database,
    where: HistoryFilter,
    *,
    limit: int,
    starting_after: int | None,
) -> list[EntryRecord]:
    """Up to `limit` of the user's entries, newest first, after the entry `starting_after`."""
    statement, values = history_statement(where, limit=limit, starting_after=starting_after)
    return [EntryRecord(**row._mapping) for row in await db.execute(statement, values)]


@functools.cache
def _entry_query() -> Select[Any]:
    page = (
        select(entries)
        .join(accounts, accounts.c.id == entries.c.account_id)
        .where(entries.c.id == bindparam("entry_id"), accounts.c.user_id == bindparam("user_id"))
        .subquery("e")
    )
    return _with_details(_records_of(page).select_from(page), page)


async def history_entry(db: Database, user_id: str, entry_id: int) -> EntryRecord | None:
    """One of the user's entries by id."""
    row = (
        await db.execute(_entry_query(), {"entry_id": entry_id, "user_id": user_id})
    ).one_or_none()
    return None if row is None else EntryRecord(**row._mapping)


# --- The invariant check: whole-table reads, for the internal endpoint and the tests ---------

CHECK_LIMIT = 100
"""At most this many offenders are listed per kind of violation."""

_UNBALANCED = text(
    "SELECT transaction_id, currency, sum(amount) AS total FROM transactions.entries "
    "GROUP BY transaction_id, currency HAVING sum(amount) <> 0 "
    "ORDER BY transaction_id LIMIT :limit"
)
_EMPTY_TRANSACTIONS = text(
    "SELECT t.id FROM transactions.ledger_transactions t WHERE NOT EXISTS "
    "(SELECT 1 FROM transactions.entries e WHERE e.transaction_id = t.id) "
    "ORDER BY t.id LIMIT :limit"
)
_BALANCE_MISMATCHES = text(
    "SELECT a.id, a.balance, coalesce(s.total, 0) AS total FROM transactions.accounts a "
    "LEFT JOIN (SELECT account_id, sum(amount) AS total FROM transactions.entries "
    "GROUP BY account_id) s ON s.account_id = a.id "
    "WHERE a.balance <> coalesce(s.total, 0) ORDER BY a.id LIMIT :limit"
)
# Entries of an account are written under its row lock, so id order is posting order.
_RUNNING_BALANCE_MISMATCHES = text(
    "SELECT id, account_id, balance_after, running FROM ("
    "SELECT id, account_id, balance_after, "
    "sum(amount) OVER (PARTITION BY account_id ORDER BY id) AS running "
    "FROM transactions.entries) x WHERE balance_after <> running ORDER BY id LIMIT :limit"
)
_CURRENCY_MISMATCHES = text(
    "SELECT e.id FROM transactions.entries e JOIN transactions.accounts a ON a.id = e.account_id "
    "WHERE e.currency <> a.currency ORDER BY e.id LIMIT :limit"
)
_HELD_MISMATCHES = text(
    "SELECT a.id, a.held, coalesce(h.total, 0) AS total FROM transactions.accounts a "
    "LEFT JOIN (SELECT account_id, sum(amount) AS total FROM transactions.holds "
    "WHERE status = 'active' GROUP BY account_id) h ON h.account_id = a.id "
    "WHERE a.held <> coalesce(h.total, 0) ORDER BY a.id LIMIT :limit"
)
_NEGATIVE_WALLETS = text(
    "SELECT id, balance, held FROM transactions.accounts "
    "WHERE kind = 'user' AND (balance < 0 OR balance - held < 0) ORDER BY id LIMIT :limit"
)
_COUNTS = text(
    "SELECT (SELECT count(*) FROM transactions.ledger_transactions) AS transactions, "
    "(SELECT count(*) FROM transactions.entries) AS entries, "
    "(SELECT count(*) FROM transactions.accounts) AS accounts"
)

CHECKS = {
    "unbalanced_transactions": _UNBALANCED,
    "transactions_without_entries": _EMPTY_TRANSACTIONS,
    "balance_mismatches": _BALANCE_MISMATCHES,
    "balance_after_mismatches": _RUNNING_BALANCE_MISMATCHES,
    "currency_mismatches": _CURRENCY_MISMATCHES,
    "held_mismatches": _HELD_MISMATCHES,
    "negative_wallets": _NEGATIVE_WALLETS,
}


async def run_checks(session: AsyncSession) -> dict[str, list[dict[str, Any]]]:
    """Offending rows of each check, by check name."""
    found: dict[str, list[dict[str, Any]]] = {}
    for name, statement in CHECKS.items():
        rows = await session.execute(statement, {"limit": CHECK_LIMIT})
        found[name] = [dict(row._mapping) for row in rows]
    return found


async def counts(session: AsyncSession) -> dict[str, int]:
    """How many transactions, entries and accounts the check covered."""
    row = (await session.execute(_COUNTS)).one()
    return {key: int(value) for key, value in row._mapping.items()}
