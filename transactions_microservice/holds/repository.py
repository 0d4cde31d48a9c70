"""SQL for holds."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Integer, Text, bindparam, func, select, text, update
from sqlalchemy.dialects.postgresql import UUID
from sqlalchemy.ext.asyncio import AsyncSession

from micropay_common.db import Database, refusals
from transactions_microservice.models import AccountId, HoldStatus, accounts, holds


@dataclass(frozen=True)
class HoldRecord:
    """A hold row with the user id of its wallet."""

    id: uuid.UUID
    user_id: str
    account_id: AccountId
    amount: int
    currency: str
    reference: str
    status: str
    expires_at: datetime
    transaction_id: uuid.UUID | None
    created_at: datetime
    resolved_at: datetime | None


_HOLD_COLUMNS = (
    holds.c.id,
    accounts.c.user_id,
    holds.c.account_id,
    holds.c.amount,
    holds.c.currency,
    holds.c.reference,
    holds.c.status,
    holds.c.expires_at,
    holds.c.transaction_id,
    holds.c.created_at,
    holds.c.resolved_at,
)


async def accounts_with_expired_holds(session: AsyncSession, limit: int) -> list[AccountId]:
    """Accounts that have an active hold past its expiry."""
    rows = await session.scalars(
        select(holds.c.account_id)
        .where(holds.c.status == HoldStatus.ACTIVE, holds.c.expires_at <= func.now())
        .group_by(holds.c.account_id)
        .order_by(holds.c.account_id)
        .limit(limit)
    )
    return list(rows)


def _record(row: Any) -> HoldRecord | None:
    return None if row is None else HoldRecord(**row._mapping)


async def get(
    session: AsyncSession, hold_id: uuid.UUID, *, lock: bool = False
) -> HoldRecord | None:
    """A hold with its wallet's user id; `lock` takes the hold's row lock."""
    statement = select(*_HOLD_COLUMNS).join(accounts, accounts.c.id == holds.c.account_id)
    statement = statement.where(holds.c.id == hold_id)
    if lock:
        statement = statement.with_for_update(of=holds)
    return _record((await session.execute(statement)).one_or_none())


async def add_held(session: AsyncSession, account_id: AccountId, amount: int) -> None:
    """Change the (locked) account's held amount by `amount` (negative to release)."""
    await session.execute(
        update(accounts).where(accounts.c.id == account_id).values(held=accounts.c.held + amount)
    )


async def extend(session: AsyncSession, hold_id: uuid.UUID, ttl_seconds: int) -> bool:
    """Push an active hold's expiry to `ttl_seconds` from now (never earlier); False if not active.

    The expiry sweep takes the same row with the same status test, so a renewal and an expiry
    of one hold are ordered by the row lock: whichever commits first wins, never both.
    """
    expires_at = func.now() + func.make_interval(0, 0, 0, 0, 0, 0, ttl_seconds)
    renewed = await session.scalar(
        update(holds)
        .where(holds.c.id == hold_id, holds.c.status == HoldStatus.ACTIVE)
        .values(expires_at=func.greatest(holds.c.expires_at, expires_at))
        .returning(holds.c.id)
    )
    return renewed is not None


async def resolve(
    session: AsyncSession,
    hold_id: uuid.UUID,
    status: HoldStatus,
    transaction_id: uuid.UUID | None = None,
) -> None:
    """Move an active hold to its final status."""
    await session.execute(
        update(holds)
        .where(holds.c.id == hold_id, holds.c.status == HoldStatus.ACTIVE)
        .values(status=status, transaction_id=transaction_id, resolved_at=func.now())
    )


_RECORD_COLUMNS = (
    "id, user_id, account_id, amount, currency, reference, status, expires_at, "
    "transaction_id, created_at, resolved_at, onto_existing"
)

# Each one round trip; migration 0011 says why they are functions and what they do.
_CREATE_HOLD = text(
    f"SELECT {_RECORD_COLUMNS} FROM transactions.create_hold("  # noqa: S608 (constant)
    ":hold_id, :user_id, :amount, :currency, :reference, :ttl_seconds)"
).bindparams(
    bindparam("hold_id", type_=UUID(as_uuid=True)),
    bindparam("user_id", type_=Text),
    bindparam("currency", type_=Text),
    bindparam("reference", type_=Text),
    bindparam("ttl_seconds", type_=Integer),
)
_CAPTURE_HOLD = text(
    f"SELECT {_RECORD_COLUMNS} FROM transactions.capture_hold(:hold_id)"  # noqa: S608 (constant)
).bindparams(bindparam("hold_id", type_=UUID(as_uuid=True)))


@dataclass(frozen=True)
class CapturedHold:
    """A captured hold, and whether its refund had been debited before (without it)."""

    hold: HoldRecord
    onto_existing: bool


def _captured(row: Any) -> CapturedHold:
    values = dict(row._mapping)
    onto_existing = bool(values.pop("onto_existing"))
    return CapturedHold(HoldRecord(**values), onto_existing)


async def create_hold(
    db: Database,
    *,
    hold_id: uuid.UUID,
    user_id: str,
    amount: int,
    currency: str,
    reference: str,
    ttl_seconds: int,
) -> HoldRecord:
    """Reserve the amount (`transactions.create_hold`), or the hold made for this reference;
    Refused when a rule refuses it."""
    with refusals():
        row = (
            await db.execute(
                _CREATE_HOLD,
                {
                    "hold_id": hold_id,
                    "user_id": user_id,
                    "amount": amount,
                    "currency": currency,
                    "reference": reference,
                    "ttl_seconds": ttl_seconds,
                },
            )
        ).one()
    return _captured(row).hold


async def capture(db: Database, hold_id: uuid.UUID) -> CapturedHold:
    """Post the hold as a refund (`transactions.capture_hold`); Refused when it cannot be."""
    with refusals():
        row = (await db.execute(_CAPTURE_HOLD, {"hold_id": hold_id})).one()
    return _captured(row)
