"""SQL for the ledger: locking accounts, writing transactions and entries, reading history."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ARRAY, BigInteger, Select, bindparam, func, select, text, true, tuple_
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from transactions_microservice.models import accounts, entries, ledger_transactions, users


@dataclass(frozen=True)
class LockedAccount:
    """An account row as read under its lock."""

    id: int
    kind: str
    currency: str
    balance: int
    held: int


@dataclass(frozen=True)
class LineRecord:
    """One history line: an entry with its transaction's reference and the counterparty."""

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
    type: str | None = None
    currency: str | None = None
    created_gte: datetime | None = None
    created_lt: datetime | None = None


_LOCK_ACCOUNTS = (
    select(accounts.c.id, accounts.c.kind, accounts.c.currency, accounts.c.balance, accounts.c.held)
    .where(accounts.c.id.in_(bindparam("ids", expanding=True)))
    .order_by(accounts.c.id)
    .with_for_update()
)

# One statement for any number of accounts, so it is prepared once.
_APPLY_DELTAS = text(
    "UPDATE transactions.accounts AS a SET balance = a.balance + d.delta "
    "FROM unnest(:ids, :deltas) AS d(id, delta) WHERE a.id = d.id"
).bindparams(
    bindparam("ids", type_=ARRAY(BigInteger)), bindparam("deltas", type_=ARRAY(BigInteger))
)


async def lock_accounts(session: AsyncSession, account_ids: Sequence[int]) -> list[LockedAccount]:
    """Lock the accounts in id order (so two postings never wait on each other in a cycle)."""
    rows = await session.execute(_LOCK_ACCOUNTS, {"ids": sorted(set(account_ids))})
    return [LockedAccount(r.id, r.kind, r.currency, r.balance, r.held) for r in rows]


async def insert_transaction(
    session: AsyncSession,
    *,
    transaction_id: uuid.UUID,
    type_: str,
    reference: str,
    description: str | None,
) -> datetime | None:
    """Write the transaction row; None when (type, reference) was already posted."""
    created_at: datetime | None = await session.scalar(
        insert(ledger_transactions)
        .values(
            id=transaction_id,
            type=type_,
            reference=reference,
            description=description,
            # The time of posting, under the accounts' locks, rather than of the transaction's
            # start: an account's lines then sort by time in the order they were posted.
            created_at=func.clock_timestamp(),
        )
        .on_conflict_do_nothing(
            index_elements=[ledger_transactions.c.type, ledger_transactions.c.reference]
        )
        .returning(ledger_transactions.c.created_at)
    )
    return created_at


async def transaction_by_reference(
    session: AsyncSession, type_: str, reference: str
) -> uuid.UUID | None:
    """Id of the transaction posted for (type, reference), if any."""
    found: uuid.UUID | None = await session.scalar(
        select(ledger_transactions.c.id).where(
            ledger_transactions.c.type == type_, ledger_transactions.c.reference == reference
        )
    )
    return found


async def apply_deltas(session: AsyncSession, deltas: dict[int, int]) -> None:
    """Add each delta to its (locked) account's balance."""
    ids = list(deltas)
    await session.execute(_APPLY_DELTAS, {"ids": ids, "deltas": [deltas[i] for i in ids]})


async def insert_entries(session: AsyncSession, rows: list[dict[str, Any]]) -> None:
    """Write the entries of one transaction."""
    await session.execute(insert(entries).values(rows))


def _lines_of(page: Any) -> Select[Any]:
    """History lines of `page` (a subquery of entries): each entry with its transaction's
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


async def history_cursor(
    session: AsyncSession, user_id: str, entry_id: int
) -> tuple[datetime, int] | None:
    """(created_at, id) of one of the user's entries, to continue a page after it."""
    row = (
        await session.execute(
            select(entries.c.created_at, entries.c.id)
            .join(accounts, accounts.c.id == entries.c.account_id)
            .where(entries.c.id == entry_id, accounts.c.user_id == user_id)
        )
    ).one_or_none()
    return (row.created_at, row.id) if row is not None else None


async def history_page(
    session: AsyncSession,
    where: HistoryFilter,
    *,
    limit: int,
    after: tuple[datetime, int] | None,
) -> list[LineRecord]:
    """Up to `limit` of the user's lines, newest first, strictly after the cursor.

    Each wallet is read by its own keyset scan of entries_account_history_idx (a LATERAL
    subquery), so the cost is limit rows per wallet whatever the depth of the cursor.
    """
    wallets = select(accounts.c.id).where(accounts.c.user_id == where.user_id)
    if where.currency is not None:
        wallets = wallets.where(accounts.c.currency == where.currency)
    wallet = wallets.subquery("w")
    conditions = [entries.c.account_id == wallet.c.id]
    if after is not None:
        conditions.append(tuple_(entries.c.created_at, entries.c.id) < tuple_(*after))
    if where.type is not None:
        conditions.append(entries.c.type == where.type)
    if where.created_gte is not None:
        conditions.append(entries.c.created_at >= where.created_gte)
    if where.created_lt is not None:
        conditions.append(entries.c.created_at < where.created_lt)
    page = (
        select(entries)
        .where(*conditions)
        .order_by(entries.c.created_at.desc(), entries.c.id.desc())
        .limit(limit)
        .lateral("e")
    )
    statement = _with_details(_lines_of(page).select_from(wallet).join(page, true()), page)
    statement = statement.order_by(page.c.created_at.desc(), page.c.id.desc()).limit(limit)
    return [LineRecord(**row._mapping) for row in await session.execute(statement)]


async def history_line(session: AsyncSession, user_id: str, entry_id: int) -> LineRecord | None:
    """One of the user's lines by id."""
    page = (
        select(entries)
        .join(accounts, accounts.c.id == entries.c.account_id)
        .where(entries.c.id == entry_id, accounts.c.user_id == user_id)
        .subquery("e")
    )
    statement = _with_details(_lines_of(page).select_from(page), page)
    row = (await session.execute(statement)).one_or_none()
    return None if row is None else LineRecord(**row._mapping)


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
